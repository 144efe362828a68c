"""The accuracy reward: does the response's answer match the ground truth?

The answer is taken from the response's ``<answer>`` block (see
:func:`apo.rewards.answer.extract_answer`) and compared, in order, by

1. **multiple choice** when the ground truth is an option letter (A-F, or any
   letter of the given ``choices``), or a letter followed by the option's text
   ("A. 12 apples", "(B) 45°", "C) 3", as several benchmarks store it): the
   letter of "B", "(B)", "B.", "B)", "B. 45 degrees", "the answer is B", or the
   option whose text the answer gives. When the ground truth is surely an
   option (``choices`` given, or the option's text written out), an answer that
   is only the letter counts in either case ("b", "(c)"); a bare "c" against a
   bare "C" without choices does not, since c and C may name different things;
2. **normalised text**: case, spaces, surrounding ``$``, ``\\text{}``,
   ``\\boxed{}`` and a final period do not matter;
3. **numbers**: ``3.0`` = ``3``, ``1,000`` = ``1000``, ``12%`` = ``12``,
   ``45^\\circ`` = ``45°`` = ``45``, within a relative 1e-6;
4. **math_verify** equivalence for everything else (fractions, LaTeX,
   expressions, sets, intervals), for answers inside the bounds of
   :mod:`apo.rewards.bounds`: one over them (``10^{10^{10}}``, ``2^{99}\\ln 3``,
   forty nested braces, an integral to work out) is judged by 2 and 3 only, so
   that no answer makes sympy work for more than a fraction of a second.

An answer (or ground truth) longer than :data:`~apo.rewards.bounds.MAX_ANSWER_CHARS`
is compared as exact text only, and every regular expression here is linear in
the text's length (no two quantifiers that may match the same run of characters
follow each other, or repeat from inside such a run), so no text is slow to read.

A ground truth that no method can read is a data problem, never a free point:
:class:`GroundTruthError` is raised, which the reward runner scores 0 and counts.
Word answers ("red", "Yes") are compared as text only, so math_verify never
reads "red" as the product r*e*d.
"""

from __future__ import annotations

import logging
import math
import re

from apo.rewards.answer import extract_answer
from apo.rewards.bounds import (
    MAX_ANSWER_CHARS,
    exponential_twin,
    expression_over_bounds,
    pair_over_bounds,
    text_over_bounds,
)


class GroundTruthError(ValueError):
    """The ground-truth answer cannot be parsed: the row, not the response, is wrong."""


# Math delimiters around a whole answer, removed by string operations: the
# pattern ^\$+(.*?)\$+$ took 11 s on 2,000 dollar signs and a letter (cubic).
_DELIMITERS = (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_COMMANDS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|boxed|operatorname)\{([^{}]*)\}")
_LEAD_IN = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")
_UNITS = re.compile(r"\^\s*\{?\\circ\}?|\\circ|°|\\%|%|\\,", re.IGNORECASE)
_UNIT_WORDS = ("degrees", "degree", "deg")  # at the end only, any case: "45 Degrees"
_WORDS = re.compile(r"[A-Za-z][A-Za-z\s'\-]*")
_LEADING_LETTER = re.compile(r"^\(?([A-Z])\)?(?=$|[\s.):,])")
_ANNOUNCED_LETTER = re.compile(  # one \s* per gap, or a run of spaces splits three ways
    r"(?i:answer|option|choice)\s*(?:(?i:is)\s*)?(?::\s*)?\(?([A-Z])\)?(?=$|[\s.),:])"
)
_ONLY_LETTER = re.compile(r"\(?([A-Za-z])\)?[.)]?")
_LETTER_AND_TEXT = re.compile(r"(?:\(([A-Z])\)\s*|([A-Z])[.)]\s+)(\S.*)", re.DOTALL)
_STANDALONE_CAPITAL = re.compile(r"(?<![A-Za-z])[A-Z](?![A-Za-z])")


def strip_markup(text: str) -> str:
    """Remove math delimiters, ``\\text{}``-style wrappers and an "answer is" lead-in."""
    text = text.strip()
    for _ in range(3):  # wrappers can nest: $\boxed{\text{B}}$
        before = text
        for opening, closing in _DELIMITERS:
            text = _unwrap(text, opening, closing).strip()
        text = _COMMANDS.sub(r"\1", text).strip()
        text = _LEAD_IN.sub("", text).strip()
        if text == before:
            break
    return text


def _unwrap(text: str, opening: str, closing: str) -> str:
    """``text`` without the delimiters around it (all of a run of "$")."""
    if len(text) < len(opening) + len(closing):
        return text
    if not (text.startswith(opening) and text.endswith(closing)):
        return text
    if opening == "$":
        return text.strip("$")
    return text[len(opening) : -len(closing)]


def normalize_text(text: str) -> str:
    text = strip_markup(text).lower()
    text = re.sub(r"\s+", " ", text)
    return text.rstrip(".").strip()


def parse_number(text: str) -> float | None:
    """The number a short answer states, or None when it is not just a number, or
    none a float holds: past 1.8e308 every number would read as infinity and equal
    every other, so math_verify compares those exactly."""
    text = _UNITS.sub("", _without_unit_word(strip_markup(text))).strip().rstrip(".")
    if not text or not _NUMBER.fullmatch(text) or not any(c.isdigit() for c in text):
        return None
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _without_unit_word(text: str) -> str:
    """``text`` without a final "degrees", "degree" or "deg" and the spaces before it.
    By string operations: the pattern \\s*deg$ was tried from each space of a run."""
    lowered = text.lower()
    for word in _UNIT_WORDS:
        if lowered.endswith(word):
            return text[: -len(word)].rstrip()
    return text


def numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def choice_letter(ground_truth: str, choices: list[str] | None) -> str | None:
    """The option letter a ground truth names, or None when it is not a choice."""
    text = strip_markup(ground_truth)
    match = _ONLY_LETTER.fullmatch(text)
    if match:
        letter = match.group(1)
        if choices:
            index = ord(letter.upper()) - ord("A")
            return letter.upper() if 0 <= index < len(choices) else None
        return letter if letter in "ABCDEF" else None  # lowercase alone may be a variable
    if choices:  # the ground truth may be the option text itself
        for index, option in enumerate(choices):
            if _same_value(text, option):
                return chr(ord("A") + index)
    written = option_written_out(text)
    if written:
        letter = written[0]
        in_range = ord(letter) - ord("A") < len(choices) if choices else letter in "ABCDEF"
        return letter if in_range else None
    return None


def option_written_out(ground_truth: str) -> tuple[str, str] | None:
    """The letter and text of a ground truth that gives both ("A. 12 apples", "(B) 45°",
    "C) 3"), or None. Not when the text names another option ("(A) and (C)")."""
    match = _LETTER_AND_TEXT.fullmatch(strip_markup(ground_truth))
    if not match or _STANDALONE_CAPITAL.search(match.group(3)):
        return None
    return match.group(1) or match.group(2), match.group(3)


def predicted_letter(
    prediction: str, choices: list[str] | None, any_case: bool = False
) -> str | None:
    """The option letter an answer picks: by letter, or by the text of one option.

    With ``any_case`` (the caller knows the ground truth is an option), an answer
    that is only a letter picks it in either case: "b", "(c)", "d.".
    """
    text = strip_markup(prediction)
    if choices:
        matches = [i for i, option in enumerate(choices) if _same_value(text, option)]
        if len(matches) == 1:
            return chr(ord("A") + matches[0])
    if any_case:
        match = _ONLY_LETTER.fullmatch(text)
        if match:
            return match.group(1).upper()
    for pattern in (_LEADING_LETTER, _ANNOUNCED_LETTER):
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def _picks_option(
    prediction: str, letter: str, ground_truth: str, choices: list[str] | None
) -> bool:
    """Whether the answer picks option ``letter``, which the ground truth names."""
    written = option_written_out(ground_truth)
    if written and _same_value(prediction, written[1]):
        return True  # the option's text, which only that option has
    surely_an_option = bool(choices) or written is not None
    return predicted_letter(prediction, choices, any_case=surely_an_option) == letter


def _same_value(a: str, b: str) -> bool:
    """Text or numeric equality (no math_verify): for matching option texts."""
    if max(len(a), len(b)) > MAX_ANSWER_CHARS:
        return a.strip() == b.strip()
    if normalize_text(a) == normalize_text(b):
        return True
    x, y = parse_number(a), parse_number(b)
    return x is not None and y is not None and numbers_equal(x, y)


# Tried from the start of a word only: from inside a run of letters, it would
# retry the rest of the run from every letter (quadratic).
_SENTENCE = re.compile(r"(?<![A-Za-z])[A-Za-z]{3,}\s+[A-Za-z]{2,}")


def _math_parse(text: str) -> list | None:
    """math_verify's reading of a short answer: [] when it finds no mathematical
    object, None when the answer is over the bounds of :mod:`apo.rewards.bounds`.

    Math is parsed as LaTeX first: raw, "[1, 3)" would be read as 3 and "y=2x+1"
    as 2. A sentence ("There are 14 people.") is read raw, which finds its number.
    """
    if text_over_bounds(text, sentence=True) is not None:
        return None  # over the bounds however it is read
    from math_verify import parse  # loads sympy: in the workers, when an answer needs it

    twin = exponential_twin(text) if text_over_bounds(text) is None else None
    if twin is not None:  # parsed as it is, it would evaluate its powers of e at once
        parsed = parse(twin if "$" in twin else f"${twin}$", parsing_timeout=None)
        if not parsed or isinstance(parsed[0], str):
            return None  # unchecked, so not parsed
        if any(expression_over_bounds(item) is not None for item in parsed):
            return None
    if "$" in text:
        candidates = [text]
    elif _SENTENCE.search(text) and "\\" not in text:
        candidates = [text, f"${text}$"]
    else:
        candidates = [f"${text}$", text]
    for candidate in candidates:
        # Raw text without "$", "\\" or "[" is read by regular expressions alone, and
        # may be longer; anything else goes through math_verify's slower LaTeX parser.
        by_regex = candidate == text and not any(c in text for c in "$\\[")
        if not by_regex and text_over_bounds(text) is not None:
            return None
        # math_verify's own timeouts rely on signals and fail outside a main
        # thread; the bounds keep every call short, and the reward runner still
        # kills a worker that runs past rewards.timeout_seconds.
        parsed = parse(candidate, parsing_timeout=None)
        if parsed and not isinstance(parsed[0], str):  # a bare string is no parse
            if any(expression_over_bounds(item) is not None for item in parsed):
                return None
            return parsed
    return []


def answers_match(prediction: str, ground_truth: str, choices: list[str] | None = None) -> bool:
    """Whether an extracted answer equals the ground truth (see the module docstring).

    Safe to call directly, in any thread: no answer keeps it busy for more than a
    fraction of a second (:mod:`apo.rewards.bounds`). Raises GroundTruthError when
    the ground truth cannot be read at all.
    """
    ground_truth = ground_truth.strip()
    if max(len(prediction), len(ground_truth)) > MAX_ANSWER_CHARS and ground_truth:
        # Read by no parser. Too long for a final answer, but it may be a whole
        # response, which has no <answer> block.
        return prediction.strip() == ground_truth
    if not ground_truth or not strip_markup(ground_truth):
        raise GroundTruthError("the ground truth is empty")
    if not prediction.strip():
        return False

    letter = choice_letter(ground_truth, choices)
    if letter is not None:
        return _picks_option(prediction, letter, ground_truth, choices)

    if normalize_text(prediction) == normalize_text(ground_truth):
        return True
    expected, given = parse_number(ground_truth), parse_number(prediction)
    if expected is not None and given is not None:
        return numbers_equal(expected, given)
    if _WORDS.fullmatch(strip_markup(ground_truth)) and len(strip_markup(ground_truth)) > 1:
        return False  # a word answer: text comparison only

    from math_verify import verify  # (see _math_parse)

    gold = _math_parse(ground_truth)
    if gold is None:
        return False  # over the bounds: judged by the text and number comparisons above
    if not gold:
        raise GroundTruthError(f"cannot parse the ground truth {ground_truth!r}")
    guess = _math_parse(prediction)
    if not guess:
        return False
    if any(pair_over_bounds(g, p) is not None for g in gold for p in guess):
        return False  # each inside the bounds, but not their difference (see the bounds)
    return bool(verify(gold, guess, timeout_seconds=None))


def accuracy_reward(
    response: str, answer: str, choices: list[str] | None = None, **_: object
) -> float:
    """1.0 when the response's answer matches the ground truth ``answer``, else 0.0."""
    return 1.0 if answers_match(extract_answer(response), answer, choices) else 0.0


def warm_up() -> None:
    """Import math_verify and sympy and judge one answer with them, so that the
    first real answer costs no more than the next (reward workers call this at start).

    A symbolic answer too: sympy's simplify imports its units and combinatorics
    the first time it runs in full (0.3 s, over 1 s on a loaded machine)."""
    answers_match("\\frac{1}{2}", "0.5")
    answers_match("\\sin(x)+\\ln(x)", "x+1")


# math_verify warns on every call that its own timeouts are off: we know, see above.
logging.getLogger("math_verify").setLevel(logging.ERROR)
