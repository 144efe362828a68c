"""What every benchmark adapter provides, and the question it produces.

An adapter reads the benchmark's own published files (its parquet, JSON or
TSV, with embedded or referenced images) from a local path, turns each row into
a :class:`Question`, and judges an extracted answer with the benchmark authors'
rule (as far as that rule is not an LLM judge: each adapter says).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apo.data.dataset import check_new_id
from apo.data.errors import DataError
from apo.data.formats import Example
from apo.data.images import ImageRef, image_ref
from apo.data.records import Record, read_records


@dataclass
class Question:
    """One benchmark question: what the model is shown and how its answer is judged.

    ``choices`` are the options used for judging; they are also listed in the
    prompt when ``show_choices`` (some benchmarks write them into the question).
    ``categories`` maps each breakdown the benchmark defines (task, subject...) to
    this question's values (several for multi-label fields like MathVista's skills).
    """

    id: str
    question: str
    answer: str
    images: list[ImageRef] = field(default_factory=list)
    choices: list[str] | None = None
    show_choices: bool = True
    multiple_choice: bool = False
    answer_type: str | None = None  # MathVista: integer, float, text, list
    precision: int | None = None
    categories: dict[str, list[str]] = field(default_factory=dict)
    location: str = ""

    def example(self) -> Example:
        """As a training-format example, for the prompt."""
        return Example(
            id=self.id,
            question=self.question,
            answer=self.answer,
            images=self.images,
            choices=self.choices if self.show_choices else None,
            location=self.location,
        )


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: where its files are, how a row becomes a question, how an
    extracted answer is judged."""

    name: str
    title: str
    splits: tuple[str, ...]  # the first is the default
    patterns: Callable[[str], list[str]]  # split -> globs of its files inside a download
    parse: Callable[[Record, int], Question]  # (row, its index) -> question
    judge: Callable[[Question, str], bool]  # (question, extracted answer) -> correct
    category_fields: tuple[str, ...] = ()
    protocol: str = ""  # the authors' scoring, and how ours differs

    def files(self, path: str | Path, split: str) -> list[Path]:
        """The split's files: ``path`` itself, or what its patterns find inside it."""
        path = Path(path)
        if not path.exists():
            raise DataError(str(path), "no such file or folder", reason="missing_file")
        if path.is_file():
            return [path]
        for pattern in self.patterns(split):
            found = sorted(path.glob(pattern))
            if found:
                return found
        raise DataError(
            str(path),
            f"no {self.title} {split} files here (looked for {', '.join(self.patterns(split))})",
            reason="missing_file",
        )

    def questions(self, path: str | Path, split: str, limit: int | None = None) -> list[Question]:
        """Every question of the split, checked; bad rows raise DataError (file, row, field)."""
        if split not in self.splits:
            raise ValueError(
                f"{self.name} has no split {split!r}; choose from {', '.join(self.splits)}"
            )
        questions: list[Question] = []
        seen: dict[str, str] = {}
        for row, record in enumerate(self._records(path, split)):
            if record.error is not None:
                raise record.error
            question = self.parse(record, row)
            check_new_id(seen, question.id, record.location)
            seen[question.id] = record.location
            questions.append(question)
            if limit is not None and len(questions) >= limit:
                break
        if not questions:
            raise DataError(str(path), f"no {self.title} questions found", reason="empty")
        return questions

    def _records(self, path: str | Path, split: str) -> Iterator[Record]:
        for file in self.files(path, split):
            yield from read_records(file)


# ---------------------------------------------------------------- row helpers


def text_field(record: Record, name: str, *, required: bool = True) -> str:
    """A field as stripped text ("" when optional and absent)."""
    value = record.fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise DataError(record.location, "missing required field", name, "missing_field")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(
            record.location,
            f"must be text or a number, got {type(value).__name__}",
            name,
            "wrong_type",
        )
    return str(value).strip()


def whole_number_field(record: Record, name: str) -> int | None:
    """A field holding a whole number (an integer, a float like 2.0, or such text), or None."""
    value = record.fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
    ):
        shown = f"{value!r:.40}" if isinstance(value, str) else type(value).__name__
        raise DataError(record.location, f"must be a whole number, got {shown}", name, "wrong_type")
    return int(value)


def image_field(record: Record, *names: str) -> list[ImageRef]:
    """The image of the first of ``names`` the row has (path, bytes dict, base64)."""
    for name in names:
        value = record.fields.get(name)
        if value not in (None, "", {}):
            return [image_ref(value, record.base_dir, record.location, name)]
    raise DataError(record.location, "missing required field", names[0], "missing_field")


def nested(record: Record, *keys: str) -> Any:
    """``record.fields[k1][k2]...``, or None (metadata often sits in a struct)."""
    value: Any = record.fields
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def labels(value: Any) -> list[str]:
    """A category value as a list of labels (lists stay lists; None is no label)."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v not in (None, "")]
    return [str(value)]
