"""Seconds per generation call, apo's native engine against transformers' generate paths.

    python benchmarks/generation.py                       # P=8 x G=8, 128 tokens, CPU
    python benchmarks/generation.py --variants native dynamic static compiled

The same P prompts (the synthetic counting task, ``--image-size`` px images),
G responses each of exactly ``--max-new-tokens`` tokens (the end token
ignored), sampled at temperature 1, in one process, variant after variant:

- ``native``: apo's engine (``rollout.engine: native``): one prefill per
  prompt, its KV cache repeated G times;
- ``dynamic``: ``generate`` with its default dynamic KV cache (grown by
  ``torch.cat`` each step), the prompts repeated G times;
- ``static``: ``generate`` with a preallocated KV cache written in place
  (``cache_implementation="static"``), eager;
- ``compiled``: the same with the decoding step compiled by ``torch.compile``
  (transformers' own ``compile_config``, forced on for a CPU).

Each variant's first call (compile warm-up included) is printed apart from
the next ``--repeats`` calls.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from step import write_data  # the same folder: benchmarks/step.py

VARIANTS = ["native", "dynamic", "static", "compiled"]


def timed(label: str, call: Callable[[], object], repeats: int) -> None:
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    then = ", ".join(f"{s:.3f}" for s in seconds)
    print(f"| {label} | {first:.2f} | {then} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--prompts", type=int, default=8, help="prompts (P)")
    parser.add_argument("--group", type=int, default=8, help="responses per prompt (G)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=2, help="timed calls after the first")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    args = parser.parse_args(argv)

    import torch
    from transformers.generation.configuration_utils import CompileConfig

    from apo.data import DataConfig, PromptDataset
    from apo.models import ModelConfig, encode_prompts, load_model, tiny_model_path
    from apo.rollout import SamplingConfig
    from apo.rollout.native_engine import NativeEngine

    torch.manual_seed(0)
    model_path = str(tiny_model_path()) if args.model == "tiny" else args.model
    loaded = load_model(ModelConfig(name_or_path=model_path, attn_implementation="sdpa"))
    model = loaded.model.eval()
    folder = tempfile.TemporaryDirectory()  # the images are read from it while timing
    data = write_data(Path(folder.name), args.prompts, args.image_size, seed=0)
    config = DataConfig(path=str(data), max_prompt_length=None)
    prompts = PromptDataset.load(config, loaded.processor, True).prompt_inputs(range(args.prompts))
    rows = [prompt for prompt in prompts for _ in range(args.group)]
    inputs = encode_prompts(
        loaded.processor, [p.text for p in rows], [p.images for p in rows], True
    )
    tokens = args.max_new_tokens
    sample = {
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "pad_token_id": loaded.tokenizer.pad_token_id,
    }
    engine = NativeEngine(model, loaded.processor, loaded.tokenizer, True)
    sampling = SamplingConfig(
        group_size=args.group, max_new_tokens=tokens, ignore_eos=True, temperature=1.0
    )
    compile_config = CompileConfig(fullgraph=False, dynamic=False)
    compile_config._compile_all_devices = True  # transformers compiles on GPUs only
    calls = {
        "native": lambda: engine.generate(prompts, sampling),
        "dynamic": lambda: model.generate(**inputs, **sample),
        "static": lambda: model.generate(
            **inputs, **sample, cache_implementation="static", disable_compile=True
        ),
        "compiled": lambda: model.generate(
            **inputs, **sample, cache_implementation="static", compile_config=compile_config
        ),
    }
    print(
        f"model {args.model}, P={args.prompts} x G={args.group}, {tokens} tokens, "
        f"{args.image_size}px images, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print("| variant | first call (s) | next calls (s) |\n|---|---|---|")
    with torch.no_grad():
        for variant in args.variants:
            timed(variant, calls[variant], args.repeats)
    folder.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
