import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from apo.models.tiny import SPECIAL_TOKENS, TAG_TOKENS, save_tiny_model, tiny_model_path
from tests.helpers import chat_prompt, image


def test_builds_the_same_model_every_time(tmp_path):
    first = load_file(save_tiny_model(tmp_path / "a") / "model.safetensors")
    second = load_file(save_tiny_model(tmp_path / "b") / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert (tmp_path / "a" / "tokenizer.json").read_text() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_text()


def test_cached_model_is_reused(tmp_path):
    path = tiny_model_path(tmp_path)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_path(tmp_path) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tiny-build-")]


def test_loads_like_a_real_checkpoint_offline(tiny_path):
    processor = AutoProcessor.from_pretrained(tiny_path)
    model = AutoModelForImageTextToText.from_pretrained(tiny_path)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert 300_000 < sum(p.numel() for p in model.parameters()) < 2_000_000
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)
    assert ids == list(range(ids[0], ids[0] + len(SPECIAL_TOKENS)))  # Qwen's order, contiguous
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    info = json.loads((Path(tiny_path) / "apo_tiny_model.json").read_text())
    assert info["seed"] == 0


def test_reasoning_tags_are_single_tokens_and_survive_decoding(tiny_path):
    tokenizer = AutoProcessor.from_pretrained(tiny_path).tokenizer
    text = "<think>3 red circles</think><answer>3</answer>"
    tokens = tokenizer.tokenize(text)
    assert all(tag in tokens for tag in TAG_TOKENS)
    assert tokenizer.decode(tokenizer.encode(text), skip_special_tokens=True) == text


def test_any_text_can_be_encoded(tiny_path):
    tokenizer = AutoProcessor.from_pretrained(tiny_path).tokenizer
    text = "Ünïcödé ∑ 数学 🙂 \\frac{1}{2}"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_generates_a_group_of_responses_for_an_image_prompt(tiny_path):
    processor = AutoProcessor.from_pretrained(tiny_path)
    model = AutoModelForImageTextToText.from_pretrained(tiny_path)
    prompt = chat_prompt(processor, "How many circles?", [image()])
    assert "<|vision_start|><|image_pad|><|vision_end|>" in prompt.text
    assert prompt.text.endswith("<|im_start|>assistant\n")
    inputs = processor(text=[prompt.text], images=prompt.images, return_tensors="pt")
    # 56x56 -> 4 patches of 28x28 after merging: 4 image tokens in the prompt.
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 4
    output = model.generate(**inputs, max_new_tokens=64, do_sample=True, num_return_sequences=8)
    assert output.shape[0] == 8
    assert output.shape[1] <= inputs["input_ids"].shape[1] + 64
