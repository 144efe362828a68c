"""``apo compare``: GRPO, GRPO+DADS, GRPO+STCR and APO on the same task, budget and seeds.

Each (variant, seed) is an ``apo demo`` run in its own process; ``parallel``
of them run at once, sharing the CPU cores. The result is a table (mean and
spread over seeds) and figures of the per-step mean over seeds of each variant.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from apo.plots import plot_runs
from apo.run_folder import check_writable
from apo.tracking import read_metrics

_APO = ["--dads", "on", "--stcr", "on"]
VARIANTS: dict[str, list[str]] = {  # name: its flags of apo demo
    "GRPO": ["--dads", "off", "--stcr", "off"],
    "GRPO+DADS": ["--dads", "on", "--stcr", "off"],
    "GRPO+STCR": ["--dads", "off", "--stcr", "on"],
    "APO": _APO,
    # beyond GRPO (docs/ALGORITHM.md sections 9 and 10), measured against APO
    "APO+DS": [*_APO, "--dynamic-sampling"],
    "APO+overlong": [*_APO, "--overlong-buffer", "32", "--overlong-filter"],
    "APO+IS": [*_APO, "--importance-sampling", "truncate"],
}
PAPER_VARIANTS = ("GRPO", "GRPO+DADS", "GRPO+STCR", "APO")  # the default

COLUMNS = {
    "reasoning acc (sampled)": ("eval/reasoning_sampled/accuracy", True),
    "reasoning acc (greedy)": ("eval/reasoning/accuracy", True),
    "general acc (sampled)": ("eval/general_sampled/accuracy", True),
    "general acc (greedy)": ("eval/general/accuracy", True),
    "length incorrect": ("eval/reasoning_sampled/length_incorrect_mean", False),
    "length correct": ("eval/reasoning_sampled/length_correct_mean", False),
}
TRAINING_COLUMNS = {  # mean of the last 10 steps
    "KL": "kl/mean",
    "entropy": "entropy/mean",
    "truncated": "length/truncated_frac",
    "sampler mismatch": "importance/logp_abs_diff",  # with importance sampling on only
}
PERCENT = {name for name, (_, percent) in COLUMNS.items() if percent} | {"truncated"}
_ACCURACY = ["reasoning acc (greedy)", "reasoning acc (sampled)"]
# What each component should change, measured against its baseline on the same seeds:
# component: (variant, baseline, metrics).
EFFECTS = {
    "STCR": ("GRPO+STCR", "GRPO", ["length incorrect", "length correct", *_ACCURACY]),
    "DADS": (
        "GRPO+DADS",
        "GRPO",
        ["KL", "entropy", "general acc (greedy)", "general acc (sampled)", _ACCURACY[0]],
    ),
    "dynamic sampling": ("APO+DS", "APO", [*_ACCURACY, "train time"]),
    "overlong": ("APO+overlong", "APO", [*_ACCURACY, "length incorrect", "truncated"]),
    "importance sampling": ("APO+IS", "APO", [*_ACCURACY, "KL", "train time"]),
}


def _run_one(
    run_dir: Path, variant: str, seed: int, extra: list[str], threads: int
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "apo", "demo", "--output", str(run_dir), "--seed", str(seed),
        *VARIANTS[variant], *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{variant} seed {seed} failed:\n{result.stderr[-3000:]}")
    return {
        "variant": variant,
        "seed": seed,
        "run_dir": run_dir,
        "seconds": time.perf_counter() - started,
    }


def summarise_run(run_dir: Path) -> dict[str, float | None]:
    records = read_metrics(run_dir)
    evals = [r for r in records if "eval/reasoning/accuracy" in r]
    final = evals[-1]
    steps = [r for r in records if "kl/mean" in r][-10:]
    summary = {name: final.get(key) for name, (key, _) in COLUMNS.items()}
    for name, key in TRAINING_COLUMNS.items():
        values = [r[key] for r in steps if r.get(key) is not None]
        summary[name] = statistics.fmean(values) if values else None
    summary["start reasoning acc (sampled)"] = evals[0].get("eval/reasoning_sampled/accuracy")
    # The training steps alone: a variant that reused the start evaluation did not
    # spend the wall time of that evaluation, the first variant did.
    summary["train time"] = sum(r["time/step"] for r in records if "time/step" in r) / 60
    return summary


def _mean_spread(values: list[float | None]) -> tuple[float | None, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    spread = statistics.stdev(present) if len(present) > 1 else 0.0
    return statistics.fmean(present), spread


def table_markdown(summaries: dict[str, list[dict]]) -> str:
    names = [*COLUMNS, *TRAINING_COLUMNS, "wall time"]
    lines = ["| variant | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
    for variant, runs in summaries.items():
        cells = []
        for name in names:
            mean, spread = _mean_spread([run[name] for run in runs])
            if name == "wall time":
                cells.append(f"{mean:.1f} min")
                continue
            percent = name in PERCENT
            if mean is None:
                cells.append("n/a")
            elif percent:
                cells.append(f"{100 * mean:.1f} ± {100 * spread:.1f}%")
            else:
                cells.append(f"{mean:.3g} ± {spread:.2g}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def effects_markdown(summaries: dict[str, list[dict]]) -> str:
    """Per component, the change it makes to each metric: the variant minus its
    baseline (GRPO, or APO for the options beyond it) on the same seed, mean ±
    standard deviation over seeds (a component whose two variants did not run is
    left out)."""
    lines = [
        "| component | metric | effect (mean ± sd over seeds) | per seed |",
        "|" + " --- |" * 4,
    ]
    for component, (variant, baseline, metrics) in EFFECTS.items():
        if variant not in summaries or baseline not in summaries:
            continue
        for metric in metrics:
            pairs = [
                (run[metric], base[metric])
                for run, base in zip(summaries[variant], summaries[baseline], strict=True)
                if run.get(metric) is not None and base.get(metric) is not None
            ]
            if not pairs:
                continue
            scale, unit = (100, " points") if metric in PERCENT else (1, "")
            unit = " min" if metric.endswith("time") else unit
            diffs = [scale * (a - b) for a, b in pairs]
            mean, spread = _mean_spread(diffs)
            seeds = ", ".join(f"{d:+.3g}" for d in diffs)
            lines.append(f"| {component} | {metric} | {mean:+.3g} ± {spread:.2g}{unit} | {seeds} |")
    return "\n".join(lines)


def _write_mean_run(run_dirs: list[Path], target: Path) -> Path:
    """A metrics.jsonl of the per-step mean over seeds, for the figures, and the first
    seed's config.yaml (the seeds share their eval sets, which the figures label)."""
    by_step: dict[int, dict[str, list[float]]] = {}
    for run_dir in run_dirs:
        for record in read_metrics(run_dir):
            slot = by_step.setdefault(record["step"], {})
            for key, value in record.items():
                if key != "step" and value is not None:
                    slot.setdefault(key, []).append(value)
    target.mkdir(parents=True, exist_ok=True)
    with (target / "metrics.jsonl").open("w") as handle:
        for step in sorted(by_step):
            means = {key: statistics.fmean(values) for key, values in by_step[step].items()}
            handle.write(json.dumps({"step": step, **means}) + "\n")
    config = run_dirs[0] / "config.yaml"
    if config.is_file():
        shutil.copyfile(config, target / "config.yaml")
    return target


def variant_run_dir(output_dir: Path, variant: str, seed: int) -> Path:
    """Where a comparison keeps the run of ``variant`` on ``seed``: ``apo-ds/seed0``."""
    return output_dir / variant.lower().replace("+", "-") / f"seed{seed}"


def run_compare(
    output_dir: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    parallel: int = 2,
    steps: int | None = None,
    quick: bool = False,
    variants: Sequence[str] = PAPER_VARIANTS,
    beta: float | None = None,
) -> Path:
    """Run every variant on every seed; write ``compare.md`` and figures; return its path."""
    output_dir = Path(output_dir)
    check_writable(output_dir, "--output")
    extra = (["--steps", str(steps)] if steps is not None else []) + (["--quick"] if quick else [])
    extra += ["--beta", str(beta)] if beta is not None else []
    threads = max(1, (os.cpu_count() or 1) // parallel)

    def run_dir(variant: str, seed: int) -> Path:
        return variant_run_dir(output_dir, variant, seed)

    # Every variant of a seed starts from the same model in the same random state, so
    # the first variant's start evaluation serves the others (apo demo checks that
    # their task and evaluation settings match). First variants go first.
    firsts = [(variants[0], s, []) for s in seeds]
    others = [(v, s, ["--start-eval-from", str(run_dir(variants[0], s))])
              for s in seeds for v in variants[1:]]  # fmt: skip
    results = []
    columns = (TextColumn("runs {task.completed}/{task.total}"), BarColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns) as progress, ThreadPoolExecutor(max_workers=parallel) as pool:
        task = progress.add_task("compare", total=len(firsts) + len(others))
        first_runs = {
            s: pool.submit(_run_one, run_dir(v, s), v, s, extra, threads) for v, s, _ in firsts
        }

        def after_first(variant: str, seed: int, reuse: list[str]) -> dict[str, Any]:
            first_runs[seed].result()  # raises if the first variant failed
            return _run_one(run_dir(variant, seed), variant, seed, extra + reuse, threads)

        futures = list(first_runs.values())
        futures += [pool.submit(after_first, v, s, reuse) for v, s, reuse in others]
        for future in futures:
            results.append(future.result())
            progress.advance(task)

    summaries: dict[str, list[dict]] = {v: [] for v in variants}
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for result in results:
        summary = summarise_run(result["run_dir"]) | {"wall time": result["seconds"] / 60}
        summaries[result["variant"]].append(summary)
        seconds[result["variant"]].append(result["seconds"])
    mean_runs = [
        _write_mean_run(
            [r["run_dir"] for r in results if r["variant"] == v], output_dir / "mean" / v
        )
        for v in variants
    ]
    figures = plot_runs(mean_runs, output_dir / "plots", labels=list(variants))
    table = table_markdown(summaries)
    effects = effects_markdown(summaries)
    text = [
        f"# apo compare: {', '.join(variants)}",
        "",
        f"Seeds {', '.join(map(str, seeds))}; each run is `apo demo` with the variant's flags"
        + (f" and beta {beta}" if beta is not None else "")
        + " "
        f"({parallel} runs at a time, {threads} thread(s) each). Values: mean ± standard "
        "deviation over seeds, at the last evaluation (accuracies, lengths) or over the last "
        f"10 steps (KL, entropy). The start model is evaluated once per seed, by {variants[0]}; "
        "the other variants reuse that evaluation (identical: the same model in the same "
        "random state), so their wall time leaves it out.",
        "",
        table,
        "",
        "Effect of each component: the variant minus its baseline on the same seed (paired; "
        "GRPO for DADS and STCR, APO for the options beyond GRPO), mean ± standard "
        "deviation over seeds; accuracies in percentage points.",
        "",
        effects
        if effects.count("\n") > 1
        else "(no component ran with its baseline: nothing to pair)",
        "",
        *(f"![{f.stem}](plots/{f.name})\n" for f in figures),
    ]
    path = output_dir / "compare.md"
    path.write_text("\n".join(text))
    (output_dir / "compare.json").write_text(
        json.dumps({"summaries": summaries, "seconds": seconds}, indent=2, default=str) + "\n"
    )
    return path
