"""``apo demo``: the whole story on a laptop CPU, offline.

1. write the synthetic task (train, held-out reasoning test, general test)
   to the run folder in the plain data format;
2. evaluate the warmed-up tiny model (the start checkpoint);
3. train it with APO (or GRPO, or an ablation) with ``apo train``'s trainer;
4. evaluate again, print a before/after table, draw the figures and write
   ``report.md``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apo.config import TrainConfig
from apo.data.synthetic import make_split, write_split
from apo.tracking import read_metrics

START_MODEL = Path(__file__).resolve().parent / "start_model"
"""The shipped start checkpoint (built by scripts/build_demo_start.py)."""


@dataclass
class DemoSettings:
    """What a demo run does; the defaults are the documented demo."""

    output_dir: str = "runs/demo"
    algorithm: str = "apo"
    dads: bool | None = None
    stcr: bool | None = None
    seed: int = 0
    steps: int = 80
    prompts_per_step: int = 16
    group_size: int = 8
    max_new_tokens: int = 48
    lr: float = 1e-4
    train_size: int = 2000
    test_size: int = 200
    general_size: int = 100
    eval_every: int = 40
    eval_samples: int = 2
    quick: bool = False

    def __post_init__(self) -> None:
        if self.quick:  # a smoke run for tests: minutes become seconds
            self.steps, self.prompts_per_step, self.group_size = 3, 4, 4
            self.train_size, self.test_size, self.general_size = 32, 16, 8
            self.eval_every, self.eval_samples = 3, 2


def write_task(directory: Path, settings: DemoSettings) -> dict[str, Path]:
    """The three splits of the synthetic task, as plain-format files."""
    seed = 1000 + settings.seed  # not the warm-up's data seed: fresh questions
    splits = {
        "train": make_split("train", settings.train_size, seed),
        "reasoning": make_split("test", settings.test_size, seed),
        "general": make_split("general", settings.general_size, seed),
    }
    return {name: write_split(rows, directory, name) for name, rows in splits.items()}


def demo_config(settings: DemoSettings, data: dict[str, Path], start_model: Path) -> TrainConfig:
    def dataset(path: Path) -> dict[str, Any]:
        return {"path": str(path), "max_prompt_length": 512, "prompt": {"system_prompt": None}}

    return TrainConfig.model_validate(
        {
            "model": {"name_or_path": str(start_model)},
            "data": dataset(data["train"]),
            "rollout": {
                "group_size": settings.group_size,
                "max_new_tokens": settings.max_new_tokens,
                "temperature": 1.0,
                "max_batch_size": 64,
            },
            "rewards": {"num_workers": 1, "timeout_seconds": 10.0},
            "algorithm": {  # the ablation flags, when given, over the algorithm's
                "dads": settings.algorithm == "apo" if settings.dads is None else settings.dads,
                "stcr": settings.algorithm == "apo" if settings.stcr is None else settings.stcr,
            },
            "optim": {"lr": settings.lr, "warmup_ratio": 0.0, "betas": [0.9, 0.95]},
            "batch": {
                "prompts_per_step": settings.prompts_per_step,
                "prompts_per_update": settings.prompts_per_step,
                "micro_batch_size": 32,
            },
            "training": {"max_steps": settings.steps, "seed": settings.seed},
            "logging": {"output_dir": settings.output_dir, "samples_per_step": 2, "log_every": 10},
            "checkpoint": {"every": 0, "keep_last": 1},
            "eval": {
                "every": settings.eval_every,
                "at_start": True,
                "datasets": {
                    "reasoning": {"data": dataset(data["reasoning"])},
                    "general": {"data": dataset(data["general"])},
                    "reasoning_sampled": {
                        "data": dataset(data["reasoning"]),
                        "temperature": 1.0,
                        "samples_per_question": settings.eval_samples,
                    },
                    "general_sampled": {
                        "data": dataset(data["general"]),
                        "temperature": 1.0,
                        "samples_per_question": settings.eval_samples,
                    },
                },
            },
        }
    )


EVAL_COLUMNS = {
    "reasoning accuracy, sampled": "eval/reasoning_sampled/accuracy",
    "reasoning accuracy, greedy": "eval/reasoning/accuracy",
    "general accuracy, sampled": "eval/general_sampled/accuracy",
    "general accuracy, greedy": "eval/general/accuracy",
    "length, correct (sampled)": "eval/reasoning_sampled/length_correct_mean",
    "length, incorrect (sampled)": "eval/reasoning_sampled/length_incorrect_mean",
}


def before_after(records: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """First and last evaluation of each column."""
    evals = [r for r in records if "eval/reasoning/accuracy" in r]
    first, last = evals[0], evals[-1]
    return {name: (first.get(key), last.get(key)) for name, key in EVAL_COLUMNS.items()}


def format_value(value: float | None, percent: bool) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if percent else f"{value:.1f}"


def table_markdown(rows: dict[str, tuple[float, float]]) -> str:
    lines = ["| | before | after | change |", "| --- | --- | --- | --- |"]
    for name, (before, after) in rows.items():
        percent = "accuracy" in name
        if before is None or after is None:
            change = "n/a"
        elif percent:
            change = f"{100 * (after - before):+.1f} points"
        else:
            change = f"{after - before:+.1f}"
        cells = (name, format_value(before, percent), format_value(after, percent), change)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    run_dir: Path, settings: DemoSettings, rows: dict, figures: list[Path], seconds: float
) -> Path:
    variant = settings.algorithm.upper()
    if settings.dads is not None or settings.stcr is not None:
        variant += f" (dads={settings.dads}, stcr={settings.stcr})"
    text = [
        f"# apo demo: {variant} on the synthetic visual reasoning task",
        "",
        f"Seed {settings.seed}, {settings.steps} steps of {settings.prompts_per_step} prompts x "
        f"{settings.group_size} samples, {seconds / 60:.1f} minutes. Start: the warmed-up tiny "
        "Qwen2.5-VL model shipped with apo. Accuracy on held-out questions, greedy and sampled "
        f"(temperature 1, mean of {settings.eval_samples} samples per question): *reasoning* "
        "(counting, most frequent colour; the task trained on) and *general* (name the colour "
        "or shape of one object; never trained with RL).",
        "",
        table_markdown(rows),
        "",
    ]
    for figure in figures:
        text += [f"![{figure.stem}]({figure.relative_to(run_dir)})", ""]
    text += [
        "Files: `metrics.jsonl` (every step), `samples.jsonl` (completions), "
        "`final_model/` (loadable with `from_pretrained`), `data/` (the task).",
        "",
    ]
    path = run_dir / "report.md"
    path.write_text("\n".join(text))
    return path


def start_model_path() -> Path:
    if not (START_MODEL / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the demo start checkpoint is missing from {START_MODEL}; "
            "rebuild it with: python scripts/build_demo_start.py"
        )
    return START_MODEL


def run_demo(settings: DemoSettings, *, report: bool = True) -> dict[str, Any]:
    """Run the demo; returns the before/after numbers and where things were written."""
    from apo.plots import plot_runs
    from apo.trainer import Trainer

    started = time.perf_counter()
    run_dir = Path(settings.output_dir)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # a demo always starts afresh
    data = write_task(run_dir / "data", settings)
    config = demo_config(settings, data, start_model_path())
    Trainer(config).train()
    seconds = time.perf_counter() - started
    rows = before_after(read_metrics(run_dir))
    result = {"before_after": rows, "seconds": seconds, "run_dir": str(run_dir)}
    if report:
        figures = plot_runs([run_dir], run_dir / "plots", labels=[settings.algorithm])
        result["report"] = str(write_report(run_dir, settings, rows, figures, seconds))
    (run_dir / "demo_result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
