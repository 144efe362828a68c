"""``apo demo``: the whole story on a laptop CPU, offline.

1. check every setting, then lock the run folder and empty it (only a new or
   empty folder, or an earlier demo's, is ever emptied);
2. write the synthetic task (train, held-out reasoning test, general test)
   to the run folder in the plain data format;
3. evaluate the start checkpoint (a tiny model warmed up on a noisy teacher);
4. train it with APO (or GRPO, or an ablation) with ``apo train``'s trainer;
5. evaluate again, read the greedy answers' reasoning of both models, print a
   before/after table with the noise band of each change, draw the figures and
   write ``report.md``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ValidationError

from apo.config import (
    TrainConfig,
    format_validation_error,
    portable_config,
    without_training_only,
)
from apo.data.synthetic import make_split, write_split
from apo.demo.warmup import prompt_of, reasoning_checks
from apo.models import ModelConfig, load_model
from apo.rollout import DEFAULT_ENGINE, SamplingConfig, build_engine
from apo.run_folder import check_writable, prepare_demo_folder, run_lock
from apo.tracking import read_metrics

START_MODEL = Path(__file__).resolve().parent / "start_model"
"""The shipped start checkpoint (built by scripts/build_demo_start.py)."""


# The demo's STCR base. The official 1.00001 is sized for answers of thousands of
# tokens and is inert on the demo's answers of tens of tokens (docs/RESULTS.md).
# 2 ** (1 / 24): an incorrect answer 24 tokens longer than the group's correct ones
# (about one extra enumeration of the scene) gets w = 0.5, i.e. A * 1.5 (docs/ALGORITHM.md).
DEMO_STCR_BASE = 2 ** (1 / 24)
# The demo's KL coefficient. At the official 1e-3 the KL term is negligible at this
# scale, and RL drifts far enough from the start model to make its reasoning
# unfaithful (right answers after a padded enumeration, docs/RESULTS.md); 0.04
# (DeepSeekMath's GRPO value) keeps the enumeration and lets DADS matter.
DEMO_BETA = 0.04


@dataclass
class DemoSettings:
    """What a demo run does; the defaults are the documented demo."""

    output_dir: str = "runs/demo"
    algorithm: str = "apo"
    dads: bool | None = None
    stcr: bool | None = None
    seed: int = 0
    steps: int = 25
    prompts_per_step: int = 16
    group_size: int = 8
    max_new_tokens: int = 96
    lr: float = 5e-5
    beta: float = DEMO_BETA
    stcr_base: float = DEMO_STCR_BASE
    train_size: int = 2000
    test_size: int = 200
    general_size: int = 100
    eval_every: int = 0  # 0: before and after training only
    eval_samples: int = 4
    # Each prompt run once per micro-batch for its group (batch.share_prompts): a fifth
    # off the demo's time, and the same runs (docs/PERFORMANCE.md)
    share_prompts: bool = True
    quick: bool = False
    # A finished demo run of the same seed and task whose start evaluation to reuse
    # (apo compare: every variant starts from the same model in the same random state).
    start_eval_from: str | None = None
    # Beyond GRPO (apo compare's variants; docs/ALGORITHM.md sections 9 and 10)
    dynamic_sampling: bool = False
    overlong_buffer: int = 0
    overlong_filter: bool = False
    importance_sampling: str = "off"

    def check(self) -> None:
        """One-line errors naming the command-line flag, before anything is written."""
        rules = {  # flag: (value, holds, what it must be)
            "--steps": (self.steps, self.steps >= 1, "at least 1"),
            "--beta": (self.beta, self.beta >= 0, "0 or more"),
            "--stcr-base": (self.stcr_base, self.stcr_base > 1, "above 1"),
            "--seed": (self.seed, self.seed >= 0, "0 or more"),
            "--eval-samples": (self.eval_samples, self.eval_samples >= 1, "at least 1"),
            "--overlong-buffer": (
                self.overlong_buffer,
                0 <= self.overlong_buffer <= self.max_new_tokens,
                f"between 0 and the answer limit, {self.max_new_tokens}",
            ),
        }
        for flag, (value, holds, requirement) in rules.items():
            if not holds:
                raise ValueError(f"{flag} must be {requirement} (got {value})")

    def __post_init__(self) -> None:
        if self.quick:  # a smoke run for tests: minutes become seconds
            self.steps, self.prompts_per_step, self.group_size = 3, 4, 4
            self.train_size, self.test_size, self.general_size = 32, 16, 8
            self.eval_every, self.eval_samples = 3, 2


def task_splits(settings: DemoSettings) -> dict[str, list[dict[str, Any]]]:
    """The three splits of the synthetic task: train, held-out reasoning, general."""
    seed = 1000 + settings.seed  # not the warm-up's data seed: fresh questions
    return {
        "train": make_split("train", settings.train_size, seed),
        "reasoning": make_split("test", settings.test_size, seed),
        "general": make_split("general", settings.general_size, seed),
    }


def write_task(directory: Path, splits: dict[str, list[dict[str, Any]]]) -> dict[str, Path]:
    """The splits as plain-format files."""
    return {name: write_split(rows, directory, name) for name, rows in splits.items()}


def demo_config(settings: DemoSettings, data: dict[str, Path], start_model: Path) -> TrainConfig:
    """The ``apo train`` config of a demo run; a bad setting is a one-line ValueError."""
    settings.check()

    def dataset(path: Path) -> dict[str, Any]:
        return {"path": str(path), "max_prompt_length": 512, "prompt": {"system_prompt": None}}

    raw = {
        "model": {"name_or_path": str(start_model)},
        "data": dataset(data["train"]),
        "rollout": {
            "group_size": settings.group_size,
            "max_new_tokens": settings.max_new_tokens,
            "temperature": 1.0,
            "max_batch_size": 64,
            "dynamic_sampling": settings.dynamic_sampling,
        },
        "rewards": {
            "num_workers": 1,
            "timeout_seconds": 10.0,
            "overlong_buffer": settings.overlong_buffer,
        },
        "algorithm": {  # the ablation flags, when given, over the algorithm's
            "dads": settings.algorithm == "apo" if settings.dads is None else settings.dads,
            "stcr": settings.algorithm == "apo" if settings.stcr is None else settings.stcr,
            "beta": settings.beta,
            "stcr_base": settings.stcr_base,
            "overlong_filter": settings.overlong_filter,
            "importance_sampling": settings.importance_sampling,
        },
        "optim": {"lr": settings.lr, "warmup_ratio": 0.0, "betas": [0.9, 0.95]},
        "batch": {
            "prompts_per_step": settings.prompts_per_step,
            "prompts_per_update": settings.prompts_per_step,
            "micro_batch_size": 32,
            # rows sorted by length, about 2,048 tokens per micro-batch: a quarter less
            # update time than 32 rows in rollout order (docs/PERFORMANCE.md)
            "max_tokens_per_micro_batch": 2048,
            "share_prompts": settings.share_prompts,
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
                "general_sampled": {  # retention only: 2 samples are enough
                    "data": dataset(data["general"]),
                    "temperature": 1.0,
                    "samples_per_question": min(2, settings.eval_samples),
                },
            },
        },
    }
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as error:
        raise ValueError(
            "invalid demo settings:\n" + format_validation_error(error, TrainConfig)
        ) from None


@dataclass(frozen=True)
class Column:
    """A row of the before/after table: a metric of the first and last evaluation."""

    key: str  # in metrics.jsonl
    percent: bool = True
    split: str | None = None  # "reasoning" or "general": its question count sets the noise


def eval_columns(samples: int) -> dict[str, Column]:
    """The before/after rows; sampled accuracy is pass@1 (the mean of ``samples`` answers)."""
    return {
        "reasoning accuracy, greedy": Column("eval/reasoning/accuracy", split="reasoning"),
        "reasoning accuracy, sampled": Column("eval/reasoning_sampled/accuracy", split="reasoning"),
        f"reasoning pass@{samples}, sampled": Column(
            f"eval/reasoning_sampled/pass@{samples}", split="reasoning"
        ),
        "general accuracy, greedy": Column("eval/general/accuracy", split="general"),
        "general accuracy, sampled": Column("eval/general_sampled/accuracy", split="general"),
        "length, correct (sampled)": Column(
            "eval/reasoning_sampled/length_correct_mean", percent=False
        ),
        "length, incorrect (sampled)": Column(
            "eval/reasoning_sampled/length_incorrect_mean", percent=False
        ),
    }


CHECK_ROWS = {  # reasoning_checks() of greedy answers, before and after
    "enumeration exact (greedy)": "enumeration",
    "answer agrees with own enumeration (greedy)": "agreement",
}


def before_after(records: list[dict[str, Any]], samples: int) -> dict[str, tuple[float, float]]:
    """First and last evaluation of each column."""
    evals = [r for r in records if "eval/reasoning/accuracy" in r]
    first, last = evals[0], evals[-1]
    return {
        name: (first.get(col.key), last.get(col.key)) for name, col in eval_columns(samples).items()
    }


def noise_band(before: float, after: float, questions: int) -> float:
    """Two standard errors of ``after - before`` for rates measured on ``questions``
    questions each: 2 * sqrt(b (1 - b) / n + a (1 - a) / n).

    It treats the two measurements as independent binomial estimates (the same
    questions are asked twice, so the true error of the difference is smaller),
    and counts a question once even when it was sampled several times: a
    conservative band. A change larger than it is unlikely to be noise.
    """
    variance = (before * (1 - before) + after * (1 - after)) / max(1, questions)
    return 2 * math.sqrt(variance)


def format_value(value: float | None, percent: bool) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if percent else f"{value:.1f}"


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(name, before, after, change, noise) cells of the before/after table."""
    percent_rows = {name for name, col in eval_columns(result["samples"]).items() if col.percent}
    percent_rows |= set(CHECK_ROWS)
    cells = []
    for name, (before, after) in result["before_after"].items():
        percent = name in percent_rows
        band = result["noise"].get(name)
        if before is None or after is None:
            change = "n/a"
        elif percent:
            change = f"{100 * (after - before):+.1f} points"
        else:
            change = f"{after - before:+.1f}"
        noise = "" if band is None else f"± {100 * band:.1f}"
        if band is not None and before is not None and after is not None:
            noise += " (beyond)" if abs(after - before) > band else " (within)"
        cells.append(
            (name, format_value(before, percent), format_value(after, percent), change, noise)
        )
    return cells


def changes_beyond_noise(result: dict[str, Any]) -> dict[str, list[str]]:
    """The rows whose change is larger than its noise band, as "name: +x points (± b)",
    under "better" or "worse" (every row with a band is a rate where higher is better:
    an accuracy, or a check of the reasoning)."""
    changes: dict[str, list[str]] = {"better": [], "worse": []}
    for name, (before, after) in result["before_after"].items():
        band = result["noise"].get(name)
        if band is None or before is None or after is None or abs(after - before) <= band:
            continue
        text = f"{name} {100 * (after - before):+.1f} points (± {100 * band:.1f})"
        changes["better" if after > before else "worse"].append(text)
    return changes


def changes_summary(result: dict[str, Any]) -> str:
    """One sentence naming every change beyond its noise band, good or bad."""
    changes = changes_beyond_noise(result)
    if not changes["better"] and not changes["worse"]:
        return "No change is beyond its noise band."
    parts = [f"{kind}: {'; '.join(rows)}" for kind, rows in changes.items() if rows]
    return "Beyond the noise band, " + "; ".join(parts) + "."


def table_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| | before | after | change | noise (2 SE) |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    return "\n".join(lines)


def write_report(
    run_dir: Path, settings: DemoSettings, result: dict[str, Any], figures: list[Path]
) -> Path:
    variant = settings.algorithm.upper()
    if settings.dads is not None or settings.stcr is not None:
        variant += f" (dads={settings.dads}, stcr={settings.stcr})"
    text = [
        f"# apo demo: {variant} on the synthetic visual reasoning task",
        "",
        f"Seed {settings.seed}, {settings.steps} steps of {settings.prompts_per_step} prompts x "
        f"{settings.group_size} samples, {result['seconds'] / 60:.1f} minutes. Start: the tiny "
        "Qwen2.5-VL model shipped with apo, warmed up on a noisy teacher (it sees the scenes "
        "but prefers a near-miss answer). Held-out questions: *reasoning* "
        f"({settings.test_size} counting and most-frequent-colour questions; the task trained "
        f"on) and *general* ({settings.general_size} questions naming the colour or shape of "
        "one object; never trained with RL). Greedy and sampled (temperature 1, "
        f"{settings.eval_samples} samples per question): sampled accuracy is pass@1, "
        f"pass@{settings.eval_samples} the share of questions with a right answer among the "
        "samples. The last rows read the greedy answers' `<think>`: does it list the scene "
        "exactly, and does the answer follow from it.",
        "",
        table_markdown(result),
        "",
        "Noise: two standard errors of the change, from the number of questions (a "
        "conservative band); *beyond* marks a change larger than it.",
        "",
        changes_summary(result),
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


@torch.no_grad()
def greedy_checks(
    model_path: Path, rows: list[dict[str, Any]], max_new_tokens: int
) -> dict[str, float]:
    """:func:`~apo.demo.warmup.reasoning_checks` of a model's greedy answers to ``rows``."""
    loaded = load_model(ModelConfig(name_or_path=str(model_path)))
    engine = build_engine(DEFAULT_ENGINE, loaded.model, loaded.processor, loaded.tokenizer, True)
    sampling = SamplingConfig(
        group_size=1, temperature=0.0, max_new_tokens=max_new_tokens, max_batch_size=64
    )
    prompts = [prompt_of(row, loaded.processor) for row in rows]
    return reasoning_checks(rows, [r.text for r in engine.generate(prompts, sampling)])


def run_demo(
    settings: DemoSettings, *, report: bool = True, overwrite: bool = False
) -> dict[str, Any]:
    """Run the demo; returns the before/after numbers and where things were written.

    Every setting is checked before the run folder is touched; the folder must be
    new, empty or an earlier demo's (else ``overwrite``), and is locked for the run.
    """
    from apo.trainer import Trainer

    started = time.perf_counter()
    run_dir = Path(settings.output_dir)
    data = {name: run_dir / "data" / f"{name}.jsonl" for name in ("train", "reasoning", "general")}
    config = demo_config(settings, data, start_model_path())  # validates every setting
    check_writable(run_dir, "--output")
    with run_lock(run_dir, "apo demo"):
        prepare_demo_folder(run_dir, overwrite)
        splits = task_splits(settings)
        write_task(run_dir / "data", splits)
        start = None
        if settings.start_eval_from is not None:
            start = reused_start_evaluation(Path(settings.start_eval_from), run_dir, config)
            # only the final evaluation: eval.every = the run's length
            config.eval.at_start, config.eval.every = False, settings.steps
        trainer = Trainer(config)
        if start is not None:
            trainer.tracker.log(0, start[0])
        trainer.train()  # closes the trainer, however it ends
        return _report(settings, splits, run_dir, started, report, start[1] if start else None)


# What decides the start model's evaluation: the same in both runs, or no reuse.
_START_EVAL_INPUTS = ("model", "rollout", "rewards", "eval", "data.prompt")


def _start_eval_inputs(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide the start evaluation, of a config as its run folder's
    config.yaml holds it (the task files relative to the run folder)."""
    config = without_training_only(config)
    values = {}
    for dotted in (*_START_EVAL_INPUTS, "training.seed"):
        value: Any = config
        for key in dotted.split("."):
            value = value[key]
        values[dotted] = value
    return values


def reused_start_evaluation(
    source: Path, run_dir: Path, config: TrainConfig
) -> tuple[dict[str, float], dict[str, float]]:
    """The step-0 evaluation and the start model's greedy checks of ``source``, a
    finished demo run whose task files and evaluation settings equal this run's.

    Every variant of ``apo compare`` starts from the same model in the same random
    state, so their start evaluations are identical (tested); measuring it once per
    seed saves each later variant its start evaluation and greedy checks (about 13 %
    of a demo run in docs/RESULTS.md).
    """

    def fail(reason: str) -> ValueError:
        return ValueError(f"--start-eval-from {source}: {reason}")

    for name in ("config.yaml", "metrics.jsonl", "demo_result.json"):
        if not (source / name).is_file():
            raise fail(f"no {name}: not a finished apo demo run")
    for name in ("reasoning", "general"):
        ours, theirs = run_dir / "data" / f"{name}.jsonl", source / "data" / f"{name}.jsonl"
        if not theirs.is_file() or theirs.read_bytes() != ours.read_bytes():
            raise fail(f"its {name} questions differ from this run's")
    mine = _start_eval_inputs(portable_config(config.model_dump(mode="json")))
    theirs = _start_eval_inputs(yaml.safe_load((source / "config.yaml").read_text()))
    differ = [key for key in mine if mine[key] != theirs.get(key)]
    if differ:
        raise fail(f"its settings differ from this run's in {', '.join(differ)}")
    first = read_metrics(source)[0]
    if first.get("step") != 0 or "eval/reasoning/accuracy" not in first:
        raise fail("its metrics do not start with the start evaluation")
    before = json.loads((source / "demo_result.json").read_text())["before_after"]
    checks = {key: before[name][0] for name, key in CHECK_ROWS.items()}
    # metrics.jsonl stores NaN (a mean over nothing) as null
    start = {k: math.nan if v is None else v for k, v in first.items() if k != "step"}
    return start, checks


def _report(
    settings: DemoSettings,
    splits: dict[str, list[dict[str, Any]]],
    run_dir: Path,
    started: float,
    report: bool,
    start_checks: dict[str, float] | None = None,
) -> dict[str, Any]:
    from apo.plots import plot_runs

    rows = before_after(read_metrics(run_dir), settings.eval_samples)
    checks = [
        start_checks
        or greedy_checks(start_model_path(), splits["reasoning"], settings.max_new_tokens),
        greedy_checks(run_dir / "final_model", splits["reasoning"], settings.max_new_tokens),
    ]
    for name, key in CHECK_ROWS.items():
        rows[name] = (checks[0][key], checks[1][key])
    questions = {"reasoning": settings.test_size, "general": settings.general_size}
    columns = eval_columns(settings.eval_samples)
    noise = {}
    for name, (before, after) in rows.items():
        split = columns[name].split if name in columns else "reasoning"
        if split is not None and before is not None and after is not None:
            noise[name] = noise_band(before, after, questions[split])
    result = {
        "before_after": rows,
        "noise": noise,
        "samples": settings.eval_samples,
        "seconds": time.perf_counter() - started,
        "run_dir": str(run_dir),
    }
    if report:
        figures = plot_runs([run_dir], run_dir / "plots", labels=[settings.algorithm])
        result["report"] = str(write_report(run_dir, settings, result, figures))
    (run_dir / "demo_result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
