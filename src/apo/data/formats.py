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

``image``/``images`` may be absent (a text-only row). Any other field is kept
in ``Example.extra`` (e.g. a category for per-category metrics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from apo.data.errors import DataError
from apo.data.images import ImageRef, image_ref
from apo.data.records import Record

VIEWR1_KEYS = {"message", "answer", "id"}
PLAIN_KEYS = {"id", "image", "images", "question", "answer", "choices"}


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
    text = str(value).strip()
    if not text:
        raise DataError(record.location, "is empty", "answer", reason="missing_field")
    return text


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
    return str(value)


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
    if choices is not None:
        if not isinstance(choices, list) or not all(
            isinstance(c, (str, int, float)) for c in choices
        ):
            raise DataError(
                record.location, "must be a list of strings", "choices", reason="wrong_type"
            )
        choices = [str(c) for c in choices] or None
    return Example(
        id=_identifier(record, row_index),
        question=question.strip(),
        answer=_answer(record),
        images=images,
        choices=choices,
        location=record.location,
        extra={k: v for k, v in fields.items() if k not in PLAIN_KEYS},
    )


def _parse_viewr1(record: Record, row_index: int) -> Example:
    message = record.fields["message"]
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except json.JSONDecodeError as error:
            raise DataError(
                record.location,
                f"holds malformed JSON: {error.msg}",
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
            system_prompt = content if isinstance(content, str) else _join_text(content)
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
    return Example(
        id=_identifier(record, row_index),
        question=question,
        answer=_answer(record),
        images=images,
        system_prompt=system_prompt,
        location=record.location,
        extra={k: v for k, v in record.fields.items() if k not in VIEWR1_KEYS},
    )


def _join_text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)
