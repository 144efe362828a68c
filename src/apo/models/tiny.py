"""The built-in tiny model: a real Qwen2.5-VL architecture, small enough for a laptop.

A random-init ``Qwen2_5_VLForConditionalGeneration`` (hidden 128, 2 text layers,
2 vision blocks, about 1M parameters) with its own byte-level BPE tokenizer
(trained here on a fixed corpus, with Qwen's special tokens), the Qwen2-VL image
and video processors and Qwen's chat template. It is built deterministically in
a few seconds, saved in the standard Hugging Face layout and cached, so
``from_pretrained`` and every code path treat it exactly like a real checkpoint.
Nothing is downloaded.

transformers is imported inside the builders: its model classes take seconds to
load, and this module is imported with every config (``model.name_or_path``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

TINY_MODEL_NAME = "tiny"
"""The name that selects the built-in tiny model wherever a model path is expected."""

# Bump when anything below changes the built files: the cache key includes it.
TINY_MODEL_REVISION = 1

# Qwen2's special tokens, in Qwen's order, right after the BPE vocabulary.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Reasoning tags get their own (non-special) tokens, as in R1-style tokenizers:
# they stay visible in decoded text, where the format reward looks for them.
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

BPE_VOCAB_SIZE = 1024

# Qwen2-VL's chat template (the one its processor ships).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Pixel budget of the image processor: 4 to 16 merged 28x28 patches per image.
MIN_PIXELS = 28 * 28 * 4
MAX_PIXELS = 28 * 28 * 16


def _training_corpus() -> list[str]:
    """A fixed corpus covering prompts, reasoning and answers of the kind we train on."""
    colours = "red green blue yellow orange purple black white gray brown pink cyan"
    shapes = "circle circles square squares triangle triangles star stars shape shapes"
    words = (
        "A conversation between User and Assistant. The user asks a question, and the "
        "Assistant solves it. The assistant first thinks about the reasoning process in "
        "the mind and then provides the user with the answer. How many are there in the "
        "image? Which colour appears most? What is the sum of the numbers? Count the "
        "objects. Answer with the option's letter from the given choices directly. "
        "Let me count: there is one, then another, so the total is. First, second, third. "
        "The answer is. Choices: Question: Hint: Please answer the question and provide "
        "the final answer at the end. I see a picture with of and the a an is are in on "
        "at left right top bottom middle large small more fewer than equal most least "
        "plus minus times divided by equals total number numbers digit digits colour "
        "color picture image object objects each only both none all so therefore yes no"
    )
    math = "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 + - * / = ( ) . , : ? $ %"
    lines = [colours, shapes, words, math, " ".join(TAG_TOKENS)]
    lines += [f"{a} + {b} = {a + b}" for a in range(12) for b in range(12)]
    lines += [
        f"<think>{w} {s}</think><answer>{n}</answer>"
        for n, (w, s) in enumerate(zip(colours.split(), shapes.split(), strict=False))
    ]
    lines += [f"({letter}) {letter}. {letter}" for letter in "ABCDEF"]
    return lines * 4


# The processor finds the vision placeholders through these.
VISION_TOKENS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>",
    "vision_eos_token": "<|vision_end|>",
}


def build_tokenizer():
    """A byte-level BPE tokenizer (any text encodes) with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.add_tokens(TAG_TOKENS)
    return wrap_tokenizer(tokenizer)


def wrap_tokenizer(backend):
    """A transformers tokenizer around a ``tokenizers`` one holding Qwen's special
    tokens: Qwen's end and pad tokens, chat template and vision placeholders."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=32768,
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens=VISION_TOKENS,
    )


def build_processor(tokenizer=None, size: dict[str, int] | None = None):
    """The Qwen2.5-VL processor; by default the tiny tokenizer and pixel budget."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    size = size or {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer or build_tokenizer(),
        video_processor=Qwen2VLVideoProcessor(size=size),
        chat_template=CHAT_TEMPLATE,
    )


def build_model(
    tokenizer,
    seed: int = 0,
    *,
    hidden: int = 128,
    layers: int = 2,
    vision_hidden: int = 64,
    vision_depth: int = 2,
):
    """A random-init tiny Qwen2.5-VL: by default the built-in tiny model (0.64 M
    parameters); the sizes make larger ones of the same architecture (heads of
    32 dimensions, so the mrope sections stay [4, 6, 6]; MLPs twice as wide)."""
    import torch

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    heads = hidden // 32  # head_dim 32: the mrope sections must sum to 16
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": max(1, heads // 2),
        "max_position_embeddings": 4096,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [4, 6, 6],
        },
    }
    vision = {
        "depth": vision_depth,
        "hidden_size": vision_hidden,
        "intermediate_size": 2 * vision_hidden,
        "num_heads": 4,
        "out_hidden_size": hidden,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [vision_depth - 1],
    }
    return qwen_vl_model(ids, text, vision, dtype=torch.float32, seed=seed)


def qwen_vl_model(
    ids: dict[str, int],
    text: dict[str, Any],
    vision: dict[str, Any],
    *,
    dtype: Any,
    seed: int,
    stop_ids: list[int] | None = None,
    device: str = "cpu",
):
    """A random-init Qwen2.5-VL of the given text and vision sizes, its special
    tokens (``ids``: Qwen's token -> id) wired into the config and generation
    config; it stops at ``stop_ids`` (default: ``<|im_end|>``)."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config=text
        | {
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=stop_ids or ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=True,
        temperature=1.0,
    )
    return model


def save_tiny_model(directory: str | os.PathLike, seed: int = 0) -> Path:
    """Build the tiny model and save model, processor and tokenizer to ``directory``."""
    directory = Path(directory)
    processor = build_processor()
    model = build_model(processor.tokenizer, seed=seed)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    (directory / "apo_tiny_model.json").write_text(
        json.dumps({"revision": TINY_MODEL_REVISION, "seed": seed}) + "\n"
    )
    return directory


def default_cache_dir() -> Path:
    root = os.environ.get("APO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "apo"
    )
    return Path(root)


def tiny_model_path(cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Path of the built-in tiny model, building it on first use (a few seconds).

    The folder name carries the revision, the seed and the transformers version,
    so a change to any of them builds a fresh copy. The build goes to a temporary
    folder that is renamed into place, so concurrent builders never see half a model.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    version = importlib.metadata.version("transformers")
    key = f"{TINY_MODEL_REVISION}-{seed}-{version}"
    path = cache / f"tiny-qwen2.5-vl-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if (path / "apo_tiny_model.json").exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=cache))
    try:
        save_tiny_model(staging, seed=seed)
        try:
            staging.rename(path)
        except OSError:
            if not (path / "apo_tiny_model.json").exists():  # not a concurrent winner
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
