"""Reusing a finished demo run's evaluation of the start model (``--start-eval-from``).

Every variant of ``apo compare`` starts from the same model in the same random
state, so their start evaluations are identical (tested); measuring it once per
seed saves each later variant its start evaluation and greedy checks (about 13 %
of a demo run in docs/RESULTS.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from apo.config import TrainConfig, portable_config, without_training_only
from apo.demo.report import CHECK_ROWS
from apo.tracking import read_metrics

# What decides the start model's evaluation: the same in both runs, or no reuse.
START_EVAL_INPUTS = ("model", "rollout", "rewards", "eval", "data.prompt", "training.seed")


def start_eval_inputs(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide the start evaluation, of a config as its run folder's
    config.yaml holds it (the task files relative to the run folder)."""
    config = without_training_only(config)
    values = {}
    for dotted in START_EVAL_INPUTS:
        value: Any = config
        for key in dotted.split("."):
            value = value[key]
        values[dotted] = value
    return values


def reused_start_evaluation(
    source: Path, run_dir: Path, config: TrainConfig
) -> tuple[dict[str, float], dict[str, float]]:
    """The step-0 evaluation and the start model's greedy checks of ``source``, a
    finished demo run whose task files and evaluation settings equal this run's
    (``run_dir``, its task already written, and ``config``); a ValueError says which
    differ."""

    def fail(reason: str) -> ValueError:
        return ValueError(f"--start-eval-from {source}: {reason}")

    for name in ("config.yaml", "metrics.jsonl", "demo_result.json"):
        if not (source / name).is_file():
            raise fail(f"no {name}: not a finished apo demo run")
    for name in ("reasoning", "general"):
        ours, theirs = run_dir / "data" / f"{name}.jsonl", source / "data" / f"{name}.jsonl"
        if not theirs.is_file() or theirs.read_bytes() != ours.read_bytes():
            raise fail(f"its {name} questions differ from this run's")
    mine = start_eval_inputs(portable_config(config.model_dump(mode="json")))
    theirs = start_eval_inputs(yaml.safe_load((source / "config.yaml").read_text()))
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
