"""Seconds per RL step, apo vs TRL's GRPOTrainer, on identical settings.

    python benchmarks/step.py                           # CPU, the built-in tiny model
    python benchmarks/step.py --natural-lengths         # responses end at the end token
    python benchmarks/step.py --model PATH --prompts 16 --group 8 --max-new-tokens 512 \\
        --image-size 448 --micro-batch 16               # the GPU setting (docs/PERFORMANCE.md)
    python benchmarks/step.py --frameworks apo trl apo-trl   # + APO inside TRL (APOTrainer)
    python benchmarks/step.py --frameworks apo apo-generate trl   # + apo with generate
    python benchmarks/step.py --model gemma3-270m --task stories --prompts 4 --group 8 \\
        --max-new-tokens 48 --micro-batch 16 --share-prompts --steps 2 --lora 16
                                                # a real base model, LoRA (0: full)

Both frameworks get the same model, the same prompts (``--task counting``: the
synthetic counting task with its images and two rewards, accuracy + format;
``--task stories``: apo's arithmetic word problems as plain few-shot text
prompts, for a base model without chat template, the accuracy reward alone),
group size G, max new tokens, one optimizer update per rollout (all P x G
responses), KL to a frozen reference (beta > 0), sampling at temperature 1,
bf16 on a GPU, and full fine-tuning or (``--lora R``) the same LoRA adapters
(apo's own peft config, alpha 2R; the reference is then the adapter-disabled
model in both). By default every response is exactly ``--max-new-tokens`` long
(end token ignored), so both do the same work. Each framework runs in its own
child process, one after the other; the first ``--warmup`` steps are not timed.

Printed per framework: seconds per step, generated tokens per second, training
tokens (prompt + response) per second, peak memory (GPU allocator peak, or the
process's peak resident memory on CPU), and each framework / TRL ratio.

``apo`` generates with apo's native engine (the default); ``apo-generate`` is
the same run with transformers' ``generate`` (``rollout.engine: transformers``).
``--max-tokens-per-micro-batch`` gives apo token-budget micro-batches;
``--share-prompts`` runs each prompt once per micro-batch for its group.

``apo-trl`` is apo's ``APOTrainer`` (apo.integrations.trl) on exactly the trl
run's TRL settings with DADS and STCR on, so apo-trl / trl is the cost of APO
inside TRL; it also prints APO's own time per step, measured directly: the time
of APOTrainer's overridden methods minus that of the GRPOTrainer methods they wrap.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ["apo", "apo-generate", "trl", "apo-trl"]


def write_data(
    directory: Path, size: int, image_size: int, seed: int, task: str = "counting"
) -> Path:
    """The prompts in apo's plain format: the synthetic counting task (images resized)
    or the arithmetic word problems."""
    if task == "stories":
        from apo.data.word_problems import make_split

        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "train.jsonl"
        rows = make_split("stories", size, seed, max_number=30)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path
    from PIL import Image

    from apo.data.synthetic import make_split, write_split

    rows = make_split("train", size, seed)
    for row in rows:
        row["image"] = row["image"].resize((image_size, image_size), Image.NEAREST)
    return write_split(rows, directory, "train")


def data_config(spec: dict[str, Any]) -> dict[str, Any]:
    """apo's ``data`` section; the TRL run gets the prompts apo renders from it."""
    data: dict[str, Any] = {"path": spec["data"], "max_prompt_length": None}
    if spec["task"] == "stories":
        from apo.data.word_problems import few_shot_template

        data["prompt"] = {
            "format": "plain",
            "system_prompt": None,
            "question_template": few_shot_template("stories"),
        }
    return data


# ------------------------------------------------------------------ apo


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lora_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """apo's ``lora`` section: rank ``--lora``, alpha twice the rank; off for 0."""
    if not spec["lora"]:
        return {"enabled": False}
    return {"enabled": True, "r": spec["lora"], "alpha": 2 * spec["lora"]}


def run_apo(spec: dict[str, Any], engine: str = "native") -> dict[str, Any]:
    import torch

    from apo.config import TrainConfig
    from apo.tracking import read_metrics
    from apo.trainer import Trainer

    cuda = torch.cuda.is_available()
    steps = spec["warmup"] + spec["steps"]
    config = TrainConfig.model_validate(
        {
            "model": {
                "name_or_path": spec["model"],
                "dtype": "bfloat16" if cuda else "float32",
                "attn_implementation": "sdpa",
                "gradient_checkpointing": spec["gradient_checkpointing"],
            },
            "lora": lora_settings(spec),
            "data": data_config(spec),
            "rollout": {
                "group_size": spec["group"],
                "max_new_tokens": spec["max_new_tokens"],
                "temperature": 1.0,
                "ignore_eos": not spec["natural_lengths"],
                "engine": engine,
            },
            "algorithm": {"name": "apo", "beta": spec["beta"]},
            "optim": {"lr": 1e-6, "warmup_ratio": 0.0},
            "batch": {
                "prompts_per_step": spec["prompts"],
                "prompts_per_update": spec["prompts"],
                "micro_batch_size": spec["micro_batch"],
                "logprob_batch_size": spec["logprob_batch"] or spec["micro_batch"],
                "max_tokens_per_micro_batch": spec.get("max_tokens_per_micro_batch"),
                "share_prompts": spec.get("share_prompts", False),
            },
            "training": {"max_steps": steps, "seed": spec["seed"]},
            "logging": {"output_dir": spec["output"], "samples_per_step": 0, "log_every": 10**6},
            "checkpoint": {"every": 0, "export_final_model": False},
            # a base model writes no <think> block: the format reward would be 0 everywhere
            "rewards": {"num_workers": 2}
            | ({"components": ["accuracy"]} if spec["task"] == "stories" else {}),
        }
    )
    trainer = Trainer(config)
    trainable = trainable_parameters(trainer.policy)
    trainer.train()
    records = read_metrics(spec["output"])[spec["warmup"] :]
    phases = ("generation", "reward", "batching", "reference", "update")
    return {
        "step_seconds": [r["time/step"] for r in records],
        "phases": {p: statistics.fmean(r[f"time/{p}"] for r in records) for p in phases},
        "generated_tokens": [r["length/mean"] * spec["prompts"] * spec["group"] for r in records],
        "gpu_peak_mib": max((r.get("memory/gpu_peak_mib", 0.0) for r in records), default=0.0),
        "trainable_parameters": trainable,
    }


# ------------------------------------------------------------------ TRL


def counting_prompts(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """TRL's rows of the counting task: apo's system prompt and user text, one image."""
    from PIL import Image

    from apo.data.formats import Example
    from apo.data.prompts import DEFAULT_SYSTEM_PROMPT, PromptConfig, user_text

    folder = Path(spec["data"]).parent
    rows = [json.loads(line) for line in Path(spec["data"]).read_text().splitlines()]

    def prompt(row):
        example = Example(
            id=row["id"], question=row["question"], answer=row["answer"], choices=row.get("choices")
        )
        text = user_text(example, PromptConfig())
        return [
            {"role": "system", "content": [{"type": "text", "text": DEFAULT_SYSTEM_PROMPT}]},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]},
        ]

    return [
        {
            "prompt": prompt(row),
            "image": Image.open(folder / row["image"]).convert("RGB"),
            "answer": row["answer"],
            "choices": row.get("choices") or [],
        }
        for row in rows
    ]


def plain_prompts(spec: dict[str, Any], model: str) -> list[dict[str, Any]]:
    """TRL's rows of a plain-text task: the very prompts apo renders, less the BOS
    token apo writes itself (TRL's tokenizer call adds it)."""
    from transformers import AutoTokenizer

    from apo.data import DataConfig, PromptDataset

    tokenizer = AutoTokenizer.from_pretrained(model)
    dataset = PromptDataset.load(DataConfig.model_validate(data_config(spec)), tokenizer, False)
    bos = tokenizer.bos_token or ""
    return [
        {
            "prompt": text.removeprefix(bos),
            "answer": example.answer,
            "choices": list(example.choices or []),
        }
        for example, text in zip(dataset.examples, dataset.prompts, strict=True)
    ]


def run_trl(spec: dict[str, Any], apo: bool = False) -> dict[str, Any]:
    """TRL's GRPOTrainer, or with ``apo`` apo's APOTrainer on the same TRL settings."""
    import torch
    from datasets import Dataset
    from transformers import AutoProcessor, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from apo.models.loading import resolve_model_path
    from apo.rewards.accuracy import accuracy_reward
    from apo.rewards.format import format_reward

    cuda = torch.cuda.is_available()
    model = resolve_model_path(spec["model"])

    def text_of(completion) -> str:
        return completion if isinstance(completion, str) else completion[0]["content"]

    def accuracy(completions, answer, choices, **kwargs):
        return [
            accuracy_reward(text_of(c), a, ch or None)
            for c, a, ch in zip(completions, answer, choices, strict=True)
        ]

    def formatted(completions, **kwargs):
        return [0.5 * format_reward(text_of(c)) for c in completions]

    if spec["task"] == "stories":
        dataset = Dataset.from_list(plain_prompts(spec, model))
        reward_funcs = [accuracy]
    else:
        dataset = Dataset.from_list(counting_prompts(spec))
        reward_funcs = [accuracy, formatted]
    responses = spec["prompts"] * spec["group"]
    generation_kwargs = (
        {} if spec["natural_lengths"] else {"min_new_tokens": spec["max_new_tokens"]}
    )
    config_class, trainer_class, apo_settings = GRPOConfig, GRPOTrainer, {}
    if apo:
        import apo.integrations.trl as apo_trl

        config_class, trainer_class = apo_trl.APOConfig, apo_trl.APOTrainer
        # APO on, every TRL setting as in the GRPOTrainer run (TRL's defaults, not
        # APOConfig's official ones), so the difference is APO's work alone.
        apo_settings = {
            "correctness_reward": "accuracy",
            "loss_type": GRPOConfig.loss_type,
            "use_bias_correction_kl": GRPOConfig.use_bias_correction_kl,
        }
        # APO's own time: each overridden method's time minus that of the GRPOTrainer
        # method it wraps (shaping, gathers, metrics, the DADS-weighted KL).
        apo_seconds = [0.0]

        def timed(method, sign):
            def run(self, *args, **kwargs):
                start = time.perf_counter()
                try:
                    return method(self, *args, **kwargs)
                finally:
                    apo_seconds[0] += sign * (time.perf_counter() - start)

            return run

        for name in (
            "_generate_and_score_completions",
            "_generate",
            "_calculate_rewards",
            "_compute_loss",
        ):
            setattr(GRPOTrainer, name, timed(getattr(GRPOTrainer, name), -1))
            setattr(trainer_class, name, timed(trainer_class.__dict__[name], +1))
    args = config_class(
        **apo_settings,
        output_dir=spec["output"],
        per_device_train_batch_size=spec["micro_batch"],
        gradient_accumulation_steps=responses // spec["micro_batch"],
        num_generations=spec["group"],
        max_completion_length=spec["max_new_tokens"],
        temperature=1.0,
        beta=spec["beta"],
        learning_rate=1e-6,
        max_steps=spec["warmup"] + spec["steps"],
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=cuda,
        use_cpu=not cuda,
        seed=spec["seed"],
        gradient_checkpointing=spec["gradient_checkpointing"],
        generation_kwargs=generation_kwargs,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )

    class Timer(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []
            self.peaks: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
                self.peaks.append(torch.cuda.max_memory_allocated() / 2**20)
            self.seconds.append(time.perf_counter() - self.start)

    timer = Timer()
    model_kwargs = {
        "dtype": torch.bfloat16 if cuda else torch.float32,
        "attn_implementation": "sdpa",
    }
    args.model_init_kwargs = model_kwargs
    peft_config = None
    if spec["lora"]:
        from transformers import AutoConfig

        from apo.models import LoraConfig
        from apo.models.loading import is_multimodal_config
        from apo.models.lora import peft_lora_config

        settings = LoraConfig.model_validate(lora_settings(spec))
        peft_config = peft_lora_config(
            settings, is_multimodal_config(AutoConfig.from_pretrained(model))
        )
    trainer = trainer_class(
        model=model,
        reward_funcs=reward_funcs,
        peft_config=peft_config,
        args=args,
        train_dataset=dataset,
        processing_class=AutoProcessor.from_pretrained(model, padding_side="left"),
        callbacks=[timer],
    )
    trainer.train()
    lengths = [
        e["completions/mean_length"]
        for e in trainer.state.log_history
        if "completions/mean_length" in e
    ]
    warm = spec["warmup"]
    result = {
        "step_seconds": timer.seconds[warm:],
        "generated_tokens": [length * responses for length in lengths[warm:]],
        "gpu_peak_mib": max(timer.peaks[warm:], default=0.0),
        "trainable_parameters": trainable_parameters(trainer.model),
    }
    if apo:  # mean over all steps, the untimed ones included
        result["phases"] = {"apo_overhead": apo_seconds[0] / len(timer.seconds)}
    return result


# ------------------------------------------------------------------ the comparison


def child(framework: str, spec: dict[str, Any]) -> dict[str, Any]:
    if framework in ("apo", "apo-generate"):
        result = run_apo(spec, "native" if framework == "apo" else "transformers")
    else:
        result = run_trl(spec, apo=framework == "apo-trl")
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def prompt_tokens(spec: dict[str, Any]) -> float:
    """Mean prompt length in tokens (images included), the same for both frameworks."""
    from apo.data import DataConfig, PromptDataset
    from apo.data.dataset import prompt_token_count
    from apo.models import ModelConfig, load_model

    loaded = load_model(ModelConfig(name_or_path=spec["model"]))
    multimodal = loaded.is_multimodal and spec["task"] == "counting"
    data = DataConfig.model_validate(data_config(spec))
    dataset = PromptDataset.load(data, loaded.processor, multimodal)
    # plain prompts on a VLM (the tiny model): its tokenizer alone encodes them
    processor = loaded.processor if multimodal else loaded.tokenizer
    counts = [
        prompt_token_count(processor, text, [ref.open() for ref in example.images], multimodal)
        for example, text in zip(dataset.examples[:32], dataset.prompts[:32], strict=True)
    ]
    return statistics.fmean(counts)


def summarize(
    result: dict[str, Any], spec: dict[str, Any], prompt_length: float
) -> dict[str, float]:
    seconds = statistics.fmean(result["step_seconds"])
    generated = statistics.fmean(result["generated_tokens"])
    responses = spec["prompts"] * spec["group"]
    return {
        "seconds_per_step": seconds,
        "seconds_spread": statistics.pstdev(result["step_seconds"]),
        "generated_tokens_per_s": generated / seconds,
        "training_tokens_per_s": (generated + responses * prompt_length) / seconds,
        "peak_memory_mib": result["gpu_peak_mib"] or result["peak_rss_mib"],
        "memory_kind": "gpu" if result["gpu_peak_mib"] else "rss",
        "phases": result.get("phases", {}),
        "trainable_parameters": result["trainable_parameters"],
    }


def table(figures: dict[str, dict[str, float]]) -> str:
    rows = [
        ("seconds per step", "seconds_per_step", "{:.3f}"),
        ("generated tokens / s", "generated_tokens_per_s", "{:.0f}"),
        ("training tokens / s", "training_tokens_per_s", "{:.0f}"),
        ("peak memory (MiB)", "peak_memory_mib", "{:.0f}"),
        ("trained parameters", "trainable_parameters", "{:,}"),
    ]
    names = list(figures)
    ratios = [n for n in names if n != "trl"] if "trl" in names else []
    header = "| | " + " | ".join(names + [f"{n} / trl" for n in ratios]) + " |"
    lines = [header, "|" + "---|" * (len(names) + len(ratios) + 1)]
    for label, key, fmt in rows:
        cells = [fmt.format(figures[n][key]) for n in names]
        cells += [f"{figures[n][key] / figures['trl'][key]:.2f}" for n in ratios]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, gemma3-270m or a model folder")
    parser.add_argument(
        "--task",
        choices=["counting", "stories"],
        default="counting",
        help="counting: image prompts (a VLM); stories: plain-text word problems (any model)",
    )
    parser.add_argument("--lora", type=int, default=0, help="LoRA rank (0: full fine-tuning)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step (P)")
    parser.add_argument("--group", type=int, default=4, help="responses per prompt (G)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=8, help="sequences per forward")
    parser.add_argument(
        "--logprob-batch", type=int, default=0, help="apo's no-grad pass batch (0: micro-batch)"
    )
    parser.add_argument(
        "--max-tokens-per-micro-batch",
        type=int,
        default=None,
        help="apo: token-budget micro-batches (batch.max_tokens_per_micro_batch)",
    )
    parser.add_argument(
        "--share-prompts",
        action="store_true",
        help="apo: each prompt run once per micro-batch for its group (batch.share_prompts)",
    )
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--steps", type=int, default=4, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--natural-lengths", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument(
        "--frameworks",
        nargs="+",
        default=["apo", "trl"],
        choices=FRAMEWORKS,
        help="apo-trl: apo's APOTrainer (APO inside TRL), on the trl run's settings",
    )
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        spec = json.loads(args.spec.read_text())
        result = child(args.child, spec)
        Path(spec["result"]).write_text(json.dumps(result))
        return 0

    if (args.prompts * args.group) % args.micro_batch:
        parser.error("--micro-batch must divide --prompts x --group")
    with tempfile.TemporaryDirectory(prefix="apo-bench-") as folder:
        folder = Path(folder)
        size = args.prompts * (args.warmup + args.steps)
        data = write_data(folder / "data", size, args.image_size, args.seed, args.task)
        spec = {
            key: getattr(args, key)
            for key in (
                "model", "prompts", "group", "max_new_tokens", "micro_batch", "logprob_batch",
                "beta", "steps", "warmup", "seed", "natural_lengths", "gradient_checkpointing",
                "max_tokens_per_micro_batch", "share_prompts", "task", "lora",
            )
        }  # fmt: skip
        spec["data"] = str(data)
        prompt_length = prompt_tokens(spec)
        figures = {}
        for framework in args.frameworks:
            run = spec | {
                "output": str(folder / framework),
                "result": str(folder / f"{framework}.json"),
            }
            path = folder / f"{framework}-spec.json"
            path.write_text(json.dumps(run))
            subprocess.run(
                [sys.executable, __file__, "--child", framework, "--spec", str(path)],
                check=True,
                cwd=ROOT,
                env=os.environ | {"TOKENIZERS_PARALLELISM": "false"},
            )
            result = json.loads(Path(run["result"]).read_text())
            figures[framework] = summarize(result, spec, prompt_length)
    settings = (
        f"model {args.model} ({f'LoRA r {args.lora}' if args.lora else 'full'}), "
        f"{args.task} task, P={args.prompts} prompts x G={args.group}, "
        f"{args.max_new_tokens} new tokens ({'natural' if args.natural_lengths else 'fixed'} "
        f"lengths), micro-batch {args.micro_batch}, "
        f"{f'{args.image_size}px images, ' if args.task == 'counting' else ''}beta {args.beta}, "
        f"{args.steps} timed steps after {args.warmup}"
    )
    print(settings)
    print(table(figures))
    for name in ("apo", "apo-generate"):
        if name in figures:
            phases = figures[name]["phases"]
            print(f"{name} per phase (s): " + ", ".join(f"{k} {v:.3f}" for k, v in phases.items()))
    if "apo-trl" in figures:
        overhead = figures["apo-trl"]["phases"]["apo_overhead"]
        share = overhead / figures["apo-trl"]["seconds_per_step"]
        print(f"apo-trl: APO's own time {overhead * 1e3:.2f} ms per step ({share:.2%} of a step)")
    if args.json:
        args.json.write_text(json.dumps({"settings": spec, "figures": figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
