"""MMStar (Chen et al., 2024): 1,500 multiple-choice questions that need the image,
in 6 core capabilities and 18 axes.

Files: ``Lin-Chen/MMStar`` (``mmstar.parquet``, options written inside the
question as "Options: A: ..., B: ...", image embedded), or VLMEvalKit's
``MMStar.tsv`` (base64 image, options also in columns ``A``-``D``).
Fields: ``index``, ``question``, ``image``, ``answer`` (letter), ``category``,
``l2_category`` (``l2-category`` in the TSV).
"""

from __future__ import annotations

from apo.data.records import Record
from apo.evaluation.benchmarks.base import Benchmark, Question, image_field, labels, text_field
from apo.evaluation.scoring import inline_choices, letter_matches


def parse(record: Record, row: int) -> Question:
    question = text_field(record, "question")
    inline = inline_choices(question)
    columns = [text_field(record, c, required=False) for c in "ABCD"]
    columns = [c for c in columns if c] or None
    return Question(
        id=text_field(record, "index"),
        question=question,
        answer=text_field(record, "answer"),
        images=image_field(record, "image"),
        choices=inline or columns,
        show_choices=inline is None and columns is not None,
        multiple_choice=True,
        categories={
            "category": labels(record.fields.get("category")),
            "l2_category": labels(
                record.fields.get("l2_category") or record.fields.get("l2-category")
            ),
        },
        location=record.location,
    )


def judge(question: Question, prediction: str) -> bool:
    return letter_matches(prediction, question.answer, question.choices)


BENCHMARK = Benchmark(
    name="mmstar",
    title="MMStar",
    splits=("val",),
    patterns=lambda split: ["mmstar.parquet", "**/*.parquet", "MMStar.tsv", "*.tsv"],
    parse=parse,
    judge=judge,
    category_fields=("category", "l2_category"),
    protocol=(
        "Official (VLMEvalKit): the option letter by exact matching, then an LLM "
        "(ChatGPT) maps the unmatched responses to an option. Ours: the letter or the "
        "option text only; an answer no rule reads is wrong."
    ),
)
