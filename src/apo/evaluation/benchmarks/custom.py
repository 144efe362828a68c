"""A custom benchmark: any file in the trainer's data format (plain or View-R1),
judged like the accuracy reward. An optional ``category`` field (text or a list)
gives a per-category breakdown."""

from __future__ import annotations

from apo.data.formats import parse_record
from apo.data.records import Record
from apo.evaluation.benchmarks.base import Benchmark, Question, labels
from apo.evaluation.scoring import answers_match


def parse(record: Record, row: int) -> Question:
    example = parse_record(record, row_index=row)
    return Question(
        id=example.id,
        question=example.question,
        answer=example.answer,
        images=example.images,
        choices=example.choices,
        multiple_choice=bool(example.choices),
        categories={"category": labels(example.extra.get("category"))},
        location=example.location,
    )


def judge(question: Question, prediction: str) -> bool:
    return answers_match(prediction, question.answer, question.choices)


BENCHMARK = Benchmark(
    name="custom",
    title="custom",
    splits=("train", "test", "validation"),
    patterns=lambda split: ["*.jsonl", "*.json", "*.parquet"],
    parse=parse,
    judge=judge,
    category_fields=("category",),
    protocol="The accuracy reward's rule (letters, text, numbers, math_verify).",
)
