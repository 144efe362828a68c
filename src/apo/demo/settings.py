"""What an ``apo demo`` run does: its settings, the synthetic task and its ``apo train`` config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from apo.config import TrainConfig, format_validation_error
from apo.data.synthetic import make_split, write_split

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

SPLITS = ("train", "reasoning", "general")
"""The task's splits: train, held-out reasoning questions, general questions."""


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

    @property
    def questions(self) -> dict[str, int]:
        """Questions per evaluated split: their number sets each change's noise band."""
        return {"reasoning": self.test_size, "general": self.general_size}


def start_model_path() -> Path:
    """The shipped start checkpoint; a FileNotFoundError says how to rebuild it."""
    if not (START_MODEL / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the demo start checkpoint is missing from {START_MODEL}; "
            "rebuild it with: python scripts/build_demo_start.py"
        )
    return START_MODEL


def task_splits(settings: DemoSettings) -> dict[str, list[dict[str, Any]]]:
    """The three splits of the synthetic task: train, held-out reasoning, general."""
    seed = 1000 + settings.seed  # not the warm-up's data seed: fresh questions
    return {
        "train": make_split("train", settings.train_size, seed),
        "reasoning": make_split("test", settings.test_size, seed),
        "general": make_split("general", settings.general_size, seed),
    }


def task_files(directory: Path) -> dict[str, Path]:
    """Where :func:`write_task` puts each split in ``directory``."""
    return {name: directory / f"{name}.jsonl" for name in SPLITS}


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
