"""The data settings: where the prompts come from, how they are checked, how a question
becomes a prompt.

Light (pydantic only): the config imports this module, and reading settings never
loads PIL, pyarrow or a model.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, field_validator

from apo.section import Section

DEFAULT_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think><answer> answer here </answer>"
)

PromptFormat = Literal["auto", "chat", "plain"]


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


class DataConfig(Section):
    """Where the prompts come from and how they are checked."""

    path: str | list[str] | None = Field(
        None,
        description=(
            "Data file(s) (.json, .jsonl, .parquet, .tsv) or datasets folder(s); relative to the "
            "config file."
        ),
    )
    split: str = Field("train", description="Split to read from a datasets folder with several.")
    on_error: Literal["raise", "skip"] = Field(
        "raise", description="A bad row stops the run ('raise') or is dropped and counted ('skip')."
    )
    max_image_pixels: int | None = Field(
        4096 * 4096, gt=0, description="Largest accepted image, in pixels (width x height)."
    )
    max_prompt_length: int | None = Field(
        9216, gt=0, description="Longest accepted prompt in tokens, image tokens included."
    )
    limit: int | None = Field(None, gt=0, description="Use only the first N rows.")
    shuffle: bool = Field(True, description="Visit the rows in a seeded random order.")
    prompt: PromptConfig = Field(default_factory=PromptConfig)
