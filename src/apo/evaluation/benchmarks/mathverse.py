"""MathVerse (Zhang et al., 2024): testmini, 3,940 questions (788 problems x 5
versions: Text Dominant, Text Lite, Vision Intensive, Vision Dominant, Vision Only).

Files: ``AI4Math/MathVerse`` (``testmini.json`` with its ``images/`` folder, or
the parquet export). Fields: ``sample_index``, ``problem_version``, ``question``
(options written inside it), ``query_wo`` (used when ``question`` is empty, as in
Vision Only), ``image``, ``answer``, ``question_type`` (multi-choice /
free-form), ``metadata.subject``.
"""

from __future__ import annotations

from apo.data.records import Record
from apo.evaluation.benchmarks.base import (
    Benchmark,
    Question,
    image_field,
    labels,
    nested,
    text_field,
)
from apo.evaluation.scoring import answers_match, inline_choices, letter_matches


def parse(record: Record, row: int) -> Question:
    question = text_field(record, "question", required=False) or text_field(record, "query_wo")
    multiple_choice = text_field(record, "question_type") == "multi-choice"
    return Question(
        id=text_field(record, "sample_index"),
        question=question,
        answer=text_field(record, "answer"),
        images=image_field(record, "image"),
        choices=inline_choices(question) if multiple_choice else None,
        show_choices=False,  # already in the question text
        multiple_choice=multiple_choice,
        categories={
            "version": labels(record.fields.get("problem_version")),
            "subject": labels(nested(record, "metadata", "subject")),
        },
        location=record.location,
    )


def judge(question: Question, prediction: str) -> bool:
    if question.multiple_choice:
        return letter_matches(prediction, question.answer, question.choices)
    return answers_match(prediction, question.answer)


BENCHMARK = Benchmark(
    name="mathverse",
    title="MathVerse",
    splits=("testmini",),
    patterns=lambda split: [f"{split}.json", f"**/{split}*.parquet", f"{split}/*.parquet"],
    parse=parse,
    judge=judge,
    category_fields=("version", "subject"),
    protocol=(
        "Official: GPT-4 extracts the answer, then GPT-4 judges it against the ground "
        "truth (an LLM judge). Ours: the option letter for multiple choice, math_verify "
        "equivalence for free-form answers; it can miss answers a judge would accept "
        "(e.g. an unsimplified expression with words)."
    ),
)
