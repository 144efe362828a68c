"""Turn an :class:`Example` into the model's prompt: with the model's own chat template,
or as plain text for a base model that has none."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator

from apo.data.formats import CHOICE_LETTERS, Example
from apo.section import Section

DEFAULT_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think><answer> answer here </answer>"
)

PromptFormat = Literal["auto", "chat", "plain"]


@dataclass
class PromptInput:
    """A prompt rendered with the chat template, and its images in placeholder order:
    what a rollout engine takes."""

    text: str
    images: list[Any] = field(default_factory=list)


class PromptConfig(Section):
    """How a question becomes a prompt."""

    system_prompt: str | None = Field(
        DEFAULT_SYSTEM_PROMPT,
        description=(
            "System turn asking for <think>...</think><answer>...</answer>; None: no system "
            "turn. A system turn in a View-R1 record wins over this one."
        ),
    )
    question_template: str = Field(
        "{question}",
        description=(
            "The user text; {question} is the question and {choices} the lettered options. "
            "Without {choices}, options are appended after the question."
        ),
    )
    format: PromptFormat = Field(
        "auto",
        description=(
            "chat: the model's chat template; plain (base models): the tokenizer's BOS token "
            "where its encoding starts with one, the system text and the user text, joined "
            "by a blank line, nothing after it (end question_template where the answer "
            "begins); auto: chat when the model has a chat template, else plain."
        ),
    )

    @field_validator("question_template")
    @classmethod
    def _places_the_question(cls, template: str) -> str:
        check_question_template(template)
        return template


def check_question_template(template: str) -> None:
    """A template places ``{question}`` and names no placeholder but it and ``{choices}``;
    a ValueError says what is wrong."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ValueError(f"{error}; write a literal brace as {{{{ or }}}}") from None
    unknown = sorted(names - {"question", "choices"})
    if unknown:
        placeholders = ", ".join("{" + name + "}" for name in unknown)
        raise ValueError(
            f"unknown placeholder {placeholders}: only {{question}} and {{choices}} are filled"
        )
    if "question" not in names:
        raise ValueError("no {question} placeholder: the question would be left out")


def format_choices(choices: list[str]) -> str:
    if len(choices) > len(CHOICE_LETTERS):
        raise ValueError(f"at most {len(CHOICE_LETTERS)} choices are supported, got {len(choices)}")
    return "\n".join(
        f"({letter}) {text}" for letter, text in zip(CHOICE_LETTERS, choices, strict=False)
    )


def user_text(example: Example, config: PromptConfig) -> str:
    choices = format_choices(example.choices) if example.choices else ""
    text = config.question_template.format(question=example.question, choices=choices)
    if choices and "{choices}" not in config.question_template:
        text = f"{text}\nChoices:\n{choices}"
    return text


_IMAGE_PLACEHOLDER = re.compile(r"<image ?\d+>")


def user_content(text: str, images: int) -> list[dict[str, Any]]:
    """The user turn's parts: each image where an ``<image N>`` placeholder stands
    (MMMU style) when the text has one per image, otherwise all images first."""
    marks = list(_IMAGE_PLACEHOLDER.finditer(text))
    if not images or len(marks) != images:
        return [{"type": "image"} for _ in range(images)] + [{"type": "text", "text": text}]
    content: list[dict[str, Any]] = []
    start = 0
    for mark in marks:
        if text[start : mark.start()].strip():
            content.append({"type": "text", "text": text[start : mark.start()]})
        content.append({"type": "image"})
        start = mark.end()
    if text[start:].strip():
        content.append({"type": "text", "text": text[start:]})
    return content


def chat_messages(
    example: Example, config: PromptConfig, is_multimodal: bool
) -> list[dict[str, Any]]:
    """The conversation: optional system turn, then the images and the question."""
    messages: list[dict[str, Any]] = []
    system = example.system_prompt or config.system_prompt
    if system:
        messages.append({"role": "system", "content": system})
    text = user_text(example, config)
    if is_multimodal:
        messages.append({"role": "user", "content": user_content(text, len(example.images))})
    else:
        if example.images:
            raise ValueError(f"{example.location}: this model is text-only, but the row has images")
        messages.append({"role": "user", "content": text})
    return messages


def has_chat_template(processor: Any) -> bool:
    """Whether the processor (or its tokenizer) carries a chat template."""
    tokenizer = getattr(processor, "tokenizer", processor)
    return bool(getattr(processor, "chat_template", None) or tokenizer.chat_template)


def uses_chat_template(processor: Any, config: PromptConfig) -> bool:
    """``config.format`` resolved for this processor; ValueError for ``chat`` without one."""
    if config.format == "auto":
        return has_chat_template(processor)
    if config.format == "chat" and not has_chat_template(processor):
        raise ValueError(
            "data.prompt.format is chat, but the model has no chat template (a base "
            "model?): use format plain (or auto)"
        )
    return config.format == "chat"


def render_prompt(
    example: Example, processor: Any, config: PromptConfig, is_multimodal: bool
) -> str:
    """The prompt text, ending where the assistant's answer begins."""
    if uses_chat_template(processor, config):
        return processor.apply_chat_template(
            chat_messages(example, config, is_multimodal),
            add_generation_prompt=True,
            tokenize=False,
        )
    return plain_prompt(example, processor, config)


def plain_prompt(example: Example, processor: Any, config: PromptConfig) -> str:
    """``[BOS]system\n\nuser text``, for a model without a chat template.

    BOS: apo encodes prompts without special tokens (a chat template writes its
    own), so the tokenizer's BOS token is written here when its own encoding
    starts with it (Gemma, Llama; not GPT-2 or Qwen, which add none).
    """
    if example.images:
        raise ValueError(
            f"{example.location}: plain prompts are text only, but the row has images "
            "(a vision-language model needs its chat template: data.prompt.format chat)"
        )
    tokenizer = getattr(processor, "tokenizer", processor)
    bos = tokenizer.bos_token if _encoding_starts_with_bos(tokenizer) else ""
    system = example.system_prompt or config.system_prompt
    return bos + "\n\n".join([*([system] if system else []), user_text(example, config)])


def _encoding_starts_with_bos(tokenizer: Any) -> bool:
    if tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def prompt_input(example: Example, text: str) -> PromptInput:
    """The rendered prompt with its images decoded (done per batch, not up front)."""
    return PromptInput(text=text, images=[ref.open() for ref in example.images])
