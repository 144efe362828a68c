"""Small builders shared by tests."""

from __future__ import annotations

from PIL import Image

from apo.data.prompts import PromptConfig
from apo.rollout import PromptInput


def image(width: int = 56, height: int = 56, colour=(255, 0, 0)) -> Image.Image:
    return Image.new("RGB", (width, height), colour)


def chat_prompt(
    processor, question: str, images: list[Image.Image], multimodal: bool = True
) -> PromptInput:
    """A rendered prompt as the data layer would build it."""
    from apo.data.formats import Example
    from apo.data.prompts import render_prompt

    example = Example(id="t", question=question, answer="1", images=[None] * len(images))
    text = render_prompt(example, processor, PromptConfig(), multimodal)
    return PromptInput(text=text, images=images)
