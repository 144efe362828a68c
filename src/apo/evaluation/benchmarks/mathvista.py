"""MathVista (Lu et al., 2024): testmini, 1,000 questions with answers.

Files: the dataset repository ``AI4Math/MathVista`` (``data/testmini-*.parquet``,
images embedded in ``decoded_image``), or the GitHub release's ``testmini.json``
(rows keyed by ``pid``) next to its ``images/`` folder.
Fields: ``pid``, ``question``, ``choices``, ``answer``, ``question_type``
(multi_choice / free_form), ``answer_type`` (text, integer, float, list),
``precision``, ``unit``, ``metadata.task``, ``metadata.skills``.
"""

from __future__ import annotations

from apo.data.formats import parse_choices
from apo.data.records import Record
from apo.evaluation.benchmarks.base import (
    Benchmark,
    Question,
    image_field,
    labels,
    nested,
    text_field,
    whole_number_field,
)
from apo.evaluation.scoring import closest_choice, number_with_precision

# The official query's hints, shortened: the answer's expected form.
_HINTS = {
    "integer": "Answer with an integer.",
    "float": "Answer with a number with {precision} decimal place(s).",
    "list": "Answer with a Python list, e.g. [1, 2, 3].",
}


def parse(record: Record, row: int) -> Question:
    multiple_choice = text_field(record, "question_type") == "multi_choice"
    answer_type = text_field(record, "answer_type", required=False) or "text"
    precision = whole_number_field(record, "precision")
    question = text_field(record, "question")
    unit = text_field(record, "unit", required=False)
    if unit:
        question += f" (Unit: {unit})"
    if not multiple_choice and answer_type in _HINTS:
        question += "\n" + _HINTS[answer_type].format(precision=precision or 1)
    return Question(
        id=text_field(record, "pid") if "pid" in record.fields else text_field(record, "id"),
        question=question,
        answer=text_field(record, "answer"),
        images=image_field(record, "decoded_image", "image"),
        choices=_choices(record) if multiple_choice else None,
        multiple_choice=multiple_choice,
        answer_type=answer_type,
        precision=precision,
        categories={
            "task": labels(nested(record, "metadata", "task")),
            "skill": labels(nested(record, "metadata", "skills")),
        },
        location=record.location,
    )


def _choices(record: Record) -> list[str] | None:
    value = record.fields.get("choices")
    return None if value is None else parse_choices(value, record.location)


def judge(question: Question, prediction: str) -> bool:
    """Multiple choice: the option the answer points to (letter, text, or the most
    similar option, as the official ``normalize_extracted_answer``) is the answer;
    free form: integer / float at the question's precision / list equality."""
    if question.multiple_choice and question.choices:
        return closest_choice(prediction, question.choices) == question.answer
    return number_with_precision(
        prediction, question.answer, question.answer_type or "text", question.precision
    )


BENCHMARK = Benchmark(
    name="mathvista",
    title="MathVista",
    splits=("testmini",),
    patterns=lambda split: [f"data/{split}-*.parquet", f"**/{split}*.parquet", f"{split}.json"],
    parse=parse,
    judge=judge,
    category_fields=("task", "skill"),
    protocol=(
        "Official: GPT-4 extracts the answer from the response, then the rule above "
        "compares it. Ours takes the <answer> block (or the whole response) instead of "
        "the GPT extraction; the comparison rule is the official one."
    ),
)
