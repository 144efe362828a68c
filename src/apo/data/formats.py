"""The two record formats, parsed into :class:`Example`.

**View-R1** (the official APO data)::

    {"message": [{"role": "user", "content": [
                    {"type": "image", "image": "images/1.png"},
                    {"type": "text", "text": "What is x?"}]}],
     "answer": "42"}

``message`` may also be that list encoded as a JSON string (as the official
files store it). Text parts are joined into the question; image parts, in
order, are the images. A system turn, if present, is kept as the system prompt.

**Plain**::

    {"id": "q1", "image": "a.png" | "images": [...], "question": "...",
     "answer": "B", "choices": ["3", "4", "5"]}

``image``/``images`` may be absent (a text-only row); a View-R1 row may have
``choices`` too. Any other field is kept in ``Example.extra`` (e.g. a category
for per-category metrics) and given to reward functions by its name, so it may
not be named like one of their arguments (``response``...).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from apo.data.errors import DataError
from apo.data.images import ImageRef, image_ref
from apo.data.records import Record, json_problem

VIEWR1_KEYS = {"message", "answer", "id", "choices"}
PLAIN_KEYS = {"id", "image", "images", "question", "answer", "choices"}
# What reward functions receive by name (apo.rewards.RewardSample.of): a row's
# other fields are passed along by their own names, so none may take one of these.
REWARD_ARGUMENTS = ("response", "answer", "question", "choices", "id")
# Lists and dicts nested deeper than this in another field are refused: they
# cannot be pickled for the reward workers (a few hundred levels fail).
MAX_FIELD_DEPTH = 32
CHOICE_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # the options' labels in the prompt


@dataclass
class Example:
    """A prompt with its verifiable answer, images kept as references."""

    id: str
    question: str
    answer: str
    images: list[ImageRef] = field(default_factory=list)
    choices: list[str] | None = None
    system_prompt: str | None = None
    location: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def parse_record(record: Record, row_index: int) -> Example:
    """Parse one record; the View-R1 format when it has ``message``, else plain."""
    if "message" in record.fields:
        return _parse_viewr1(record, row_index)
    return _parse_plain(record, row_index)


def _answer(record: Record) -> str:
    if "answer" not in record.fields or record.fields["answer"] is None:
        raise DataError(record.location, "missing required field", "answer", reason="missing_field")
    value = record.fields["answer"]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(
            record.location,
            f"must be a string or a number, got {type(value).__name__}",
            "answer",
            reason="wrong_type",
        )
    text = value if isinstance(value, str) else _number_text(value, record.location, "answer")
    text = text.strip()
    if not text:
        raise DataError(record.location, "is empty", "answer", reason="missing_field")
    return text


def _number_text(value: int | float, location: str, name: str) -> str:
    """A number as text; DataError for NaN, infinity and integers too long to convert."""
    if isinstance(value, float) and not math.isfinite(value):
        raise DataError(
            location, f"must be a finite number, got {value}", name, reason="wrong_type"
        )
    try:
        return str(value)
    except ValueError:  # over Python's int/str conversion limit (4300 digits by default)
        raise DataError(
            location, "is a number with too many digits", name, reason="wrong_type"
        ) from None


def _identifier(record: Record, row_index: int) -> str:
    value = record.fields.get("id")
    if value is None:
        return str(row_index)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(
            record.location,
            f"must be a string or an integer, got {type(value).__name__}",
            "id",
            reason="wrong_type",
        )
    return value if isinstance(value, str) else _number_text(value, record.location, "id")


def parse_choices(value: Any, location: str, name: str = "choices") -> list[str] | None:
    """Options given as a list of strings (or numbers), as strings; None when empty."""
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(c, str) or (isinstance(c, (int, float)) and not isinstance(c, bool))
        for c in value
    ):
        raise DataError(location, "must be a list of strings", name, reason="wrong_type")
    if len(value) > len(CHOICE_LETTERS):
        raise DataError(
            location,
            f"has {len(value)} options; at most {len(CHOICE_LETTERS)} (A-Z) are supported",
            name,
            reason="wrong_type",
        )
    return [c if isinstance(c, str) else _number_text(c, location, name) for c in value] or None


def _extra(record: Record, known: set[str]) -> dict[str, Any]:
    """The row's other fields, checked: reward functions receive them by name."""
    extra = {k: v for k, v in record.fields.items() if k not in known}
    for name, value in extra.items():
        if name in REWARD_ARGUMENTS:
            raise DataError(
                record.location,
                "is the name of an argument of reward functions "
                f"({', '.join(REWARD_ARGUMENTS)}); rename or remove the field",
                name,
                reason="reserved_field",
            )
        if _nested_deeper_than(value, MAX_FIELD_DEPTH):
            raise DataError(
                record.location,
                f"nests lists or objects more than {MAX_FIELD_DEPTH} levels deep",
                name,
                reason="wrong_type",
            )
    return extra


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and dicts nest more than ``limit`` levels in ``value`` (walked
    without recursion, as the value may be deep)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _parse_plain(record: Record, row_index: int) -> Example:
    fields = record.fields
    question = fields.get("question")
    if question is None:
        raise DataError(
            record.location,
            "missing required field (or 'message' for the View-R1 format)",
            "question",
            reason="missing_field",
        )
    if not isinstance(question, str) or not question.strip():
        raise DataError(
            record.location, "must be a non-empty string", "question", reason="wrong_type"
        )
    images: list[ImageRef] = []
    if fields.get("image") is not None and fields.get("images") is not None:
        raise DataError(
            record.location,
            "give either 'image' or 'images', not both",
            "images",
            reason="wrong_type",
        )
    if fields.get("image") is not None:
        images.append(image_ref(fields["image"], record.base_dir, record.location, "image"))
    elif fields.get("images") is not None:
        values = fields["images"]
        if not isinstance(values, list):
            raise DataError(
                record.location,
                f"must be a list, got {type(values).__name__}",
                "images",
                reason="wrong_type",
            )
        images = [
            image_ref(v, record.base_dir, record.location, f"images[{i}]")
            for i, v in enumerate(values)
        ]
    choices = fields.get("choices")
    return Example(
        id=_identifier(record, row_index),
        question=question.strip(),
        answer=_answer(record),
        images=images,
        choices=None if choices is None else parse_choices(choices, record.location),
        location=record.location,
        extra=_extra(record, PLAIN_KEYS),
    )


def _parse_viewr1(record: Record, row_index: int) -> Example:
    message = record.fields["message"]
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except (ValueError, RecursionError) as error:
            raise DataError(
                record.location,
                f"holds malformed JSON: {json_problem(error)}",
                "message",
                reason="malformed_json",
            ) from None
    if isinstance(message, dict):
        message = [message]
    if not isinstance(message, list) or not all(isinstance(turn, dict) for turn in message):
        raise DataError(
            record.location, "must be a list of chat turns", "message", reason="wrong_type"
        )
    system_prompt = None
    texts: list[str] = []
    images: list[ImageRef] = []
    for turn_index, turn in enumerate(message):
        where = f"message[{turn_index}]"
        role, content = turn.get("role"), turn.get("content")
        if role == "system":
            system_prompt = _system_text(content, record.location, f"{where}.content")
            continue
        if role != "user":
            continue  # an assistant turn is a demonstration, not part of the prompt
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise DataError(
                record.location,
                "content must be a string or a list of parts",
                f"{where}.content",
                reason="wrong_type",
            )
        for part_index, part in enumerate(content):
            part_field = f"{where}.content[{part_index}]"
            if not isinstance(part, dict):
                raise DataError(
                    record.location,
                    "a content part must be an object",
                    part_field,
                    reason="wrong_type",
                )
            kind = part.get("type") or ("image" if "image" in part else "text")
            if kind == "image":
                value = part.get("image", part.get("image_url"))
                if isinstance(value, dict) and "url" in value:
                    value = value["url"]
                images.append(
                    image_ref(value, record.base_dir, record.location, f"{part_field}.image")
                )
            elif kind == "text":
                if not isinstance(part.get("text"), str):
                    raise DataError(
                        record.location,
                        "text part has no string 'text'",
                        part_field,
                        reason="wrong_type",
                    )
                texts.append(part["text"])
            else:
                raise DataError(
                    record.location,
                    f"unsupported content type {kind!r}",
                    part_field,
                    reason="wrong_type",
                )
    question = "\n".join(t.strip() for t in texts if t.strip())
    if not question:
        raise DataError(
            record.location, "has no user text (the question)", "message", reason="missing_field"
        )
    choices = record.fields.get("choices")
    return Example(
        id=_identifier(record, row_index),
        question=question,
        answer=_answer(record),
        images=images,
        choices=None if choices is None else parse_choices(choices, record.location),
        system_prompt=system_prompt,
        location=record.location,
        extra=_extra(record, VIEWR1_KEYS),
    )


def _system_text(content: Any, location: str, field: str) -> str:
    """A system turn's text: a string, or text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict) and isinstance(part.get("text", ""), str) for part in content
    ):
        return "\n".join(part.get("text", "") for part in content)
    raise DataError(
        location,
        "a system turn's content must be a string or a list of text parts",
        field,
        reason="wrong_type",
    )
