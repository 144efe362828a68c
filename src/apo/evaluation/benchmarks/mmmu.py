"""MMMU (Yue et al., 2024): validation, 900 college-level questions in 30 subjects
(6 disciplines), up to 7 images each, placed by ``<image N>`` in the text.

Files: ``MMMU/MMMU`` (one folder per subject, ``<Subject>/validation-*.parquet``).
Fields: ``id`` (``validation_<Subject>_<n>``), ``question``, ``options`` (a list,
stored as its Python text), ``image_1`` ... ``image_7``, ``answer`` (a letter, or
the value for open questions; sometimes a list of accepted values),
``question_type`` (multiple-choice / open), ``topic_difficulty``.
"""

from __future__ import annotations

import ast
import contextlib
import re

from apo.data.errors import DataError
from apo.data.images import image_ref
from apo.data.records import Record
from apo.evaluation.benchmarks.base import Benchmark, Question, labels, text_field
from apo.evaluation.scoring import GroundTruthError, answers_match, letter_matches

DISCIPLINES = {
    "Art & Design": ["Art", "Art_Theory", "Design", "Music"],
    "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
    "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
    "Health & Medicine": [
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ],
    "Humanities & Social Science": ["History", "Literature", "Sociology", "Psychology"],
    "Tech & Engineering": [
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ],
}
DISCIPLINE_OF = {subject: d for d, subjects in DISCIPLINES.items() for subject in subjects}
_PLACEHOLDER = re.compile(r"<image ([0-9]{1,3})>")  # image_1 ... image_7


def _options(record: Record) -> list[str]:
    value = record.fields.get("options") or []
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise DataError(record.location, "is not a list", "options", "wrong_type") from None
    if not isinstance(value, (list, tuple)):
        raise DataError(record.location, "must be a list", "options", "wrong_type")
    return [str(v) for v in value]


def parse(record: Record, row: int) -> Question:
    identifier = text_field(record, "id")
    question = text_field(record, "question")
    options = _options(record)
    # Images in the order their placeholders appear (question, then options).
    order = [int(n) for n in _PLACEHOLDER.findall(" ".join([question, *options]))]
    images = []
    for number in order:
        name = f"image_{number}"
        value = record.fields.get(name)
        if value in (None, "", {}):
            raise DataError(
                record.location, f"<image {number}> has no image", name, "missing_image"
            )
        images.append(image_ref(value, record.base_dir, record.location, name))
    subject = re.sub(r"^(dev|validation|test)_|_\d+$", "", identifier)
    multiple_choice = text_field(record, "question_type") == "multiple-choice"
    return Question(
        id=identifier,
        question=question,
        answer=text_field(record, "answer"),
        images=images,
        choices=options or None,
        multiple_choice=multiple_choice and bool(options),
        categories={
            "discipline": labels(DISCIPLINE_OF.get(subject)),
            "subject": labels(subject),
            "difficulty": labels(record.fields.get("topic_difficulty")),
        },
        location=record.location,
    )


def judge(question: Question, prediction: str) -> bool:
    """Multiple choice: the letter (or an option's text). Open: equal to the answer, or
    to any of several accepted answers (stored as a list), by value."""
    if question.multiple_choice:
        return letter_matches(prediction, question.answer, question.choices)
    accepted = [question.answer]
    if question.answer.startswith("["):
        with contextlib.suppress(ValueError, SyntaxError):
            accepted = [str(a) for a in ast.literal_eval(question.answer)]
    for answer in accepted:
        try:
            if answers_match(prediction, answer):
                return True
        except GroundTruthError:
            continue
    return False


BENCHMARK = Benchmark(
    name="mmmu",
    title="MMMU",
    splits=("validation", "dev"),
    patterns=lambda split: [f"*/{split}-*.parquet", f"**/{split}-*.parquet"],
    parse=parse,
    judge=judge,
    category_fields=("discipline", "subject", "difficulty"),
    protocol=(
        "Official: rule-based (parse_multi_choice_response / parse_open_response). "
        "Differences: the official parser picks a random option when it finds none "
        "(ours counts it wrong), and reads open answers by extracting every number in "
        "the response (ours compares the <answer> block by value and math_verify)."
    ),
)
