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


def tiny_text_model(tokenizer):
    """A random-init text-only Qwen2 causal LM sized for tests, on the given tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config)
