"""MATH-Vision (Wang et al., 2024): test (3,040 questions) and testmini (304).

Files: ``MathLLMs/MathVision`` (``data/test-*.parquet`` / ``data/testmini-*.parquet``
with ``decoded_image``), or the GitHub release's ``data/test.jsonl`` next to
``images/``. Fields: ``id``, ``question`` (may hold ``<image1>``), ``options``
(empty for free-form), ``image``, ``answer`` (a letter when there are options),
``subject``, ``level`` (1 to 5).
"""

from __future__ import annotations

from apo.data.errors import DataError
from apo.data.records import Record
from apo.evaluation.benchmarks.base import Benchmark, Question, image_field, labels, text_field
from apo.evaluation.scoring import answers_match


def parse(record: Record, row: int) -> Question:
    options = record.fields.get("options") or []
    if not isinstance(options, (list, tuple)):
        raise DataError(record.location, "must be a list", "options", "wrong_type")
    return Question(
        id=text_field(record, "id"),
        question=text_field(record, "question"),
        answer=text_field(record, "answer"),
        images=image_field(record, "decoded_image", "image"),
        choices=[str(o) for o in options] or None,
        multiple_choice=bool(options),
        categories={
            "subject": labels(record.fields.get("subject")),
            "level": labels(record.fields.get("level")),
        },
        location=record.location,
    )


def judge(question: Question, prediction: str) -> bool:
    return answers_match(prediction, question.answer, question.choices)


BENCHMARK = Benchmark(
    name="mathvision",
    title="MATH-Vision",
    splits=("test", "testmini"),
    patterns=lambda split: [f"data/{split}-*.parquet", f"data/{split}.jsonl", f"{split}.jsonl"],
    parse=parse,
    judge=judge,
    category_fields=("subject", "level"),
    protocol=(
        "Official: rule-based (option letter; LaTeX-normalised equality for free-form "
        "answers). Ours: option letter or option text; numbers, then math_verify."
    ),
)
