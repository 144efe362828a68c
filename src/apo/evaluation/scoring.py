"""Rule-based answer checks used by the benchmarks' own scorers.

Each benchmark module says which of these its authors' protocol corresponds
to; :func:`apo.rewards.accuracy.answers_match` (letters, normalised text,
numbers, then ``math_verify``) is the default for everything else.
"""

from __future__ import annotations

import ast
import difflib
import re

from apo.rewards.accuracy import (
    GroundTruthError,
    answers_match,
    normalize_text,
    parse_number,
    predicted_letter,
    strip_markup,
)

__all__ = [
    "GroundTruthError",
    "answers_match",
    "closest_choice",
    "inline_choices",
    "letter_matches",
    "literal_list",
    "number_with_precision",
]

# "A. text", "A: text", "(A) text", "A) text": a letter marker before an option.
_MARKER = re.compile(r"(?:(?<=\s)|(?<=^)|(?<=[,;]))\(?([A-H])[).:：]\s*")


def inline_choices(text: str) -> list[str] | None:
    """Options written inside a question ("Options: A: 2, B: 3" or one per line),
    in letter order; None when the text lists no A, B, ... sequence."""
    markers = list(_MARKER.finditer(text))
    # The last run of markers that starts at A and goes on B, C, ... without gaps.
    best: list[re.Match] = []
    for start, marker in enumerate(markers):
        if marker.group(1) != "A":
            continue
        run = [marker]
        for following in markers[start + 1 :]:
            if ord(following.group(1)) == ord(run[-1].group(1)) + 1:
                run.append(following)
        if len(run) >= 2:
            best = run
    if not best:
        return None
    options = []
    for index, marker in enumerate(best):
        end = best[index + 1].start() if index + 1 < len(best) else len(text)
        option = text[marker.end() : end].strip().rstrip(",;").strip()
        options.append(option.split("\n")[0].strip() if index + 1 == len(best) else option)
    return options


def letter_matches(prediction: str, letter: str, choices: list[str] | None) -> bool:
    """Multiple choice: the answer's letter (or the text of one option) is ``letter``."""
    return predicted_letter(prediction, choices) == letter.strip().upper()


def closest_choice(prediction: str, choices: list[str]) -> str:
    """MathVista's rule for multiple choice: the option a letter names, else the option
    the answer's text equals, else the most similar option (edit similarity)."""
    letter = predicted_letter(prediction, choices)
    if letter is not None and ord(letter) - ord("A") < len(choices):
        return choices[ord(letter) - ord("A")]
    text = normalize_text(prediction)
    for option in choices:
        if normalize_text(option) == text:
            return option
    return max(
        choices,
        key=lambda option: difflib.SequenceMatcher(None, text, normalize_text(option)).ratio(),
    )


def number_with_precision(
    prediction: str, answer: str, answer_type: str, precision: int | None
) -> bool:
    """MathVista's free-form rule: integers compared as integers, floats rounded to the
    question's precision, lists element by element; text compared normalised."""
    if answer_type == "integer":
        given, expected = parse_number(prediction), parse_number(answer)
        return given is not None and expected is not None and int(given) == int(expected)
    if answer_type == "float":
        given, expected = parse_number(prediction), parse_number(answer)
        digits = int(precision) if precision is not None else 2
        return (
            given is not None
            and expected is not None
            and round(given, digits) == round(expected, digits)
        )
    if answer_type == "list":
        given, expected = literal_list(prediction), literal_list(answer)
        return given is not None and given == expected
    return normalize_text(prediction) == normalize_text(answer)


def literal_list(text: str) -> list[float] | None:
    """ "[1, 2.5]" -> [1.0, 2.5]; None when the text is no list of numbers."""
    text = strip_markup(text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(value, (list, tuple)):
        return None
    numbers = [parse_number(str(item)) for item in value]
    return None if any(n is None for n in numbers) else numbers
