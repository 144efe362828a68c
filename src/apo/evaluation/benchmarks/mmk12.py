"""MMK12 (Meng et al., MM-Eureka, 2025): the test split, 2,000 multiple-choice
K-12 questions, 500 each of mathematics, physics, chemistry and biology.

Files: ``FanqingM/MMK12`` (``data/test-*.parquet``). Fields: ``id``, ``subject``,
``question`` (options "A. ..." written inside it), ``image`` (embedded),
``answer`` (the option letter).
"""

from __future__ import annotations

from apo.data.records import Record
from apo.evaluation.benchmarks.base import Benchmark, Question, image_field, labels, text_field
from apo.evaluation.scoring import answers_match, inline_choices
from apo.rewards.accuracy import choice_letter


def parse(record: Record, row: int) -> Question:
    question = text_field(record, "question")
    answer = text_field(record, "answer")
    choices = inline_choices(question)
    return Question(
        id=text_field(record, "id"),
        question=question,
        answer=answer,
        images=image_field(record, "image"),
        choices=choices,
        show_choices=False,
        multiple_choice=choices is not None and choice_letter(answer, choices) is not None,
        categories={"subject": labels(record.fields.get("subject"))},
        location=record.location,
    )


def judge(question: Question, prediction: str) -> bool:
    """The option letter, or the text of the right option; other answers by value."""
    return answers_match(prediction, question.answer, question.choices)


BENCHMARK = Benchmark(
    name="mmk12",
    title="MMK12",
    splits=("test",),
    patterns=lambda split: [f"data/{split}-*.parquet", f"**/{split}*.parquet"],
    parse=parse,
    judge=judge,
    category_fields=("subject",),
    protocol="Rule-based (option letter), as in MM-Eureka's evaluation; no LLM judge.",
)
