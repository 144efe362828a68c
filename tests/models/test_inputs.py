"""Prompts encoded one at a time and collated equal the processor's own batch."""

import pytest
import torch

from apo.models import collate_prompts, encode_prompts
from tests.helpers import chat_prompt, image


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1], [2, 2], [1, 1, 0]])
def test_collated_prompts_equal_the_batch_encoding(tiny, order):
    processor = tiny.processor
    prompts = [
        chat_prompt(processor, "How many circles?", [image()]),
        chat_prompt(
            processor,
            "Two pictures here, and a longer question than the others.",
            [image(), image(84, 56, (0, 0, 255))],
        ),
        chat_prompt(processor, "2 + 3?", []),  # no image: no pixel values of its own
    ]
    chunk = [prompts[i] for i in order]
    batch = encode_prompts(processor, [p.text for p in chunk], [p.images for p in chunk], True)
    one_by_one = [encode_prompts(processor, [p.text], [p.images], True) for p in chunk]
    collated = collate_prompts(one_by_one, tiny.tokenizer.pad_token_id)
    assert collated.keys() == batch.keys()
    for key in batch:
        assert torch.equal(collated[key], batch[key]), key


def test_text_only_prompts(tiny_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)  # a text model's "processor"
    texts = ["a short one", "a much longer prompt than the first one"]
    batch = encode_prompts(tokenizer, texts, [[], []], False)
    collated = collate_prompts(
        [encode_prompts(tokenizer, [t], [[]], False) for t in texts], tokenizer.pad_token_id
    )
    assert collated.keys() == batch.keys()
    assert all(torch.equal(collated[k], batch[k]) for k in batch)
