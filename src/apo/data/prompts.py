"""Turn an :class:`Example` into the model's prompt: with the model's own chat template,
or as plain text for a base model that has none."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# The prompt settings live with the config (no PIL, no pyarrow); imported from here too.
from apo.data.config import DEFAULT_SYSTEM_PROMPT as DEFAULT_SYSTEM_PROMPT
from apo.data.config import PromptConfig as PromptConfig
from apo.data.config import PromptFormat as PromptFormat
from apo.data.config import check_question_template as check_question_template

if TYPE_CHECKING:
    from apo.data.formats import Example


@dataclass
class PromptInput:
    """A prompt rendered with the chat template, and its images in placeholder order:
    what a rollout engine takes."""

    text: str
    images: list[Any] = field(default_factory=list)


def format_choices(choices: list[str]) -> str:
    from apo.data.formats import CHOICE_LETTERS  # formats loads PIL and pyarrow: not at import

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
