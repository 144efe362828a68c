"""GRPO against APO (and GRPO+DADS, GRPO+STCR) on the real model: the same data,
budget and seeds for every variant.

    pip install -e '.[real-model]'
    python scripts/real_model_compare.py [--output runs/real_model_compare] [--seeds 0 1]

Each (variant, seed) is a run of scripts/real_model.py in its own process, one
after the other, in ``OUTPUT/{variant}/seed{n}``. The seed's first variant
measures the start model; the others reuse that evaluation (same model, data,
evaluation settings and seed). A finished run (its ``real_model.json``) is kept,
so the command continues where an interrupted one stopped; an unfinished run is
started again from scratch.

The default protocol is cheaper than scripts/real_model.py's default run (no
dynamic sampling, 20 steps, one sample per held-out question): eight runs of
about 35 minutes each on 2 CPU cores instead of eight of two hours. Written:
``OUTPUT/compare.md`` (a table, mean ± sd over seeds, and the paired effect of
each component; for runs with ``evals.jsonl``, also each component's effect on
each seed with its paired noise band) and ``compare.json`` (every run's
figures), also to ``--results`` when given.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from apo.demo.compare import variant_run_dir
from apo.demo.report import paired_noise_band, question_changes, question_scores
from apo.tracking import read_eval_rows, read_metrics

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # name: its flags of scripts/real_model.py
    "GRPO": ["--algorithm", "grpo"],
    "APO": ["--algorithm", "apo"],
    "GRPO+DADS": ["--algorithm", "grpo", "--dads"],
    "GRPO+STCR": ["--algorithm", "grpo", "--stcr"],
}
# What each component should change, as the variant minus its baseline on the same seed.
EFFECTS = {"APO": ("APO", "GRPO"), "DADS": ("GRPO+DADS", "GRPO"), "STCR": ("GRPO+STCR", "GRPO")}
COLUMNS = {  # name: (key of real_model.json or, for training metrics, of metrics.jsonl, percent)
    "greedy": ("greedy_after", True),
    "sampled": ("sampled_after", True),
    "comparisons (untrained)": ("other_greedy_after", True),
    "tokens correct": ("length_correct_mean_after", False),
    "tokens incorrect": ("length_incorrect_mean_after", False),
    "KL": ("kl/mean", False),
    "entropy": ("entropy/mean", False),
}
LAST_STEPS = 5  # KL and entropy: the mean of the last steps
EVAL_SETS = {"greedy": "test", "sampled": "test_sampled", "comparisons (untrained)": "other"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/real_model_compare")
    parser.add_argument("--results", help="also write compare.json here")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--run-flags",
        nargs=argparse.REMAINDER,
        default=["--no-dynamic-sampling", "--eval-samples", "1"],
        help="flags of scripts/real_model.py for every run (last; default: "
        "--no-dynamic-sampling --eval-samples 1)",
    )
    return parser.parse_args(argv)


def run_one(args: argparse.Namespace, variant: str, seed: int, start_from: Path | None) -> Path:
    """One run of scripts/real_model.py, unless it finished before."""
    folder = variant_run_dir(Path(args.output), variant, seed)
    flags = ["--seed", str(seed), "--steps", str(args.steps), *VARIANTS[variant], *args.run_flags]
    if (folder / "real_model.json").is_file():
        check_same_settings(folder, flags)
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted run starts again
    command = [
        sys.executable, str(ROOT / "scripts" / "real_model.py"), "--output", str(folder), *flags,
        *(["--start-eval-from", str(start_from)] if start_from else []),
    ]  # fmt: skip
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"seed{seed}.log", "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{variant} seed {seed} failed: see {log.name}")
    return folder


@functools.cache
def _real_model() -> ModuleType:
    """scripts/real_model.py as a module (a sibling script, not a package), loaded once."""
    spec = importlib.util.spec_from_file_location("real_model", ROOT / "scripts" / "real_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_same_settings(folder: Path, flags: list[str]) -> None:
    """A finished run is kept only if it ran with these flags: another protocol's run in
    the same folder would be summarised as this one's (ValueError naming the setting)."""
    wanted = vars(_real_model().parse_args(["--output", str(folder), *flags]))
    ran = json.loads((folder / "real_model.json").read_text())["settings"]
    for key, value in wanted.items():
        if key not in ("output", "results", "start_eval_from") and ran.get(key, value) != value:
            raise ValueError(
                f"{folder} ran with {key}={ran[key]!r}, not {value!r}: give another --output"
            )


def summarise_run(folder: Path) -> dict[str, float | None]:
    """The after-training figures of one run and its training metrics' last steps."""
    figures = json.loads((folder / "real_model.json").read_text())
    steps = [r for r in read_metrics(folder) if "kl/mean" in r][-LAST_STEPS:]
    summary: dict[str, float | None] = {}
    for name, (key, _) in COLUMNS.items():
        if "/" in key:
            values = [r[key] for r in steps if r.get(key) is not None]
            summary[name] = statistics.fmean(values) if values else None
        else:
            summary[name] = figures.get(key)
    summary["greedy before"] = figures["greedy_before"]
    return summary


def final_scores(folder: Path) -> dict[str, dict[str, float]]:
    """Each question's score in the run's last evaluation, per accuracy column (from
    ``evals.jsonl``; empty for a run that predates the file)."""
    rows = read_eval_rows(folder)
    if not rows:
        return {}
    last_step = max(r["step"] for r in rows)
    last = [r for r in rows if r["step"] == last_step]
    return {
        name: question_scores([r for r in last if r["set"] == eval_set])
        for name, eval_set in EVAL_SETS.items()
    }


def paired_effects(
    scores: dict[str, list[dict[str, dict[str, float]]]], seeds: list[int]
) -> dict[str, list[dict[str, float | int | None]]]:
    """Each component's effect on one seed, question by question: the mean change of
    each accuracy column (variant minus baseline on the same held-out questions) and
    its paired noise band (two standard errors, :func:`paired_noise_band`). The band
    is the evaluation's noise for that seed; the spread over seeds is the training's."""
    effects: dict[str, list[dict[str, float | int | None]]] = {}
    for component, (variant, baseline) in EFFECTS.items():
        if variant not in scores or baseline not in scores:
            continue
        for seed, after, before in zip(seeds, scores[variant], scores[baseline], strict=True):
            if not after or not before:
                continue  # a run before evals.jsonl
            effect: dict[str, float | int | None] = {"seed": seed}
            for name in EVAL_SETS:
                changes = question_changes(before[name], after[name])
                effect[name] = statistics.fmean(changes) if changes else None
                effect[f"{name} band"] = paired_noise_band(before[name], after[name])
            effects.setdefault(component, []).append(effect)
    return effects


def paired_table(effects: dict[str, list[dict[str, float | int | None]]]) -> str:
    """One row per component and seed: change ± its paired band, in percent points."""
    if not effects:
        return ""
    names = list(EVAL_SETS)
    lines = ["| component | seed | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 2)]
    for component, rows in effects.items():
        for row in rows:
            cells = []
            for name in names:
                change, band = row[name], row[f"{name} band"]
                cell = "n/a" if change is None else f"{100 * change:+.1f}"
                cells.append(cell if band is None else f"{cell} ± {100 * band:.1f}")
            lines.append(f"| {component} | {row['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(values: list[float | None], percent: bool, signed: bool = False) -> str:
    """mean ± sd over seeds (the mean alone for one seed); percent points for accuracies."""
    present = [(100 if percent else 1) * v for v in values if v is not None]
    if not present:
        return "n/a"
    mean, sign = statistics.fmean(present), "+" if signed else ""
    text = f"{mean:{sign}.1f}" if percent else f"{mean:{sign}.3g}"
    if len(present) > 1:
        sd = statistics.stdev(present)
        text += f" ± {sd:.1f}" if percent else f" ± {sd:.2g}"
    return text


def tables(summaries: dict[str, list[dict[str, float | None]]]) -> str:
    """The variants (mean ± sd over seeds) and the paired effect of each component."""
    names = list(COLUMNS)
    lines = ["| variant | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
    for variant, runs in summaries.items():
        cells = [_cell([r[n] for r in runs], COLUMNS[n][1]) for n in names]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| component | " + " | ".join(names) + " |",
        "|" + " --- |" * (len(names) + 1),
    ]
    for component, (variant, baseline) in EFFECTS.items():
        if variant not in summaries or baseline not in summaries:
            continue
        pairs = list(zip(summaries[variant], summaries[baseline], strict=True))
        cells = []
        for name in names:
            diffs = [
                None if a[name] is None or b[name] is None else a[name] - b[name] for a, b in pairs
            ]
            cells.append(_cell(diffs, COLUMNS[name][1], signed=True))
        lines.append(f"| {component} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = Path(args.output)
    # GRPO first: the seed's start evaluation is measured once, by the first variant
    order = sorted(args.variants, key=lambda v: v != "GRPO")
    folders: dict[str, list[Path]] = {v: [] for v in order}
    for seed in args.seeds:
        first = None
        for variant in order:
            folder = run_one(args, variant, seed, first)
            first = first or folder
            folders[variant].append(folder)
    summaries = {v: [summarise_run(f) for f in folders[v]] for v in order}
    effects = paired_effects({v: [final_scores(f) for f in folders[v]] for v in order}, args.seeds)
    seeds = ", ".join(map(str, args.seeds))
    text = (
        f"# GRPO and APO on the real model: seeds {seeds}, {args.steps} steps\n\n"
        f"Held-out accuracy after training (percent), answer lengths in tokens (sampled), "
        f"KL to the start model and entropy (per token, mean of the last {LAST_STEPS} "
        f"steps); mean ± sd over seeds; then each component's paired effect (variant minus "
        f"its baseline on the same seed). Run flags: {' '.join(args.run_flags)}.\n\n"
        f"{tables(summaries)}\n"
    )
    if effects:
        text += (
            "\nEach component's effect on each seed, question by question, ± its paired "
            "noise band (2 SE of the mean per-question change; percent points):\n\n"
            f"{paired_table(effects)}\n"
        )
    print(text)
    (output / "compare.md").write_text(text)
    result = {
        "seeds": args.seeds,
        "steps": args.steps,
        "run_flags": args.run_flags,
        "paired_effects": effects,
        "runs": {
            v: [dict(s, folder=str(f)) for s, f in zip(summaries[v], folders[v], strict=True)]
            for v in order
        },
    }
    for path in [output / "compare.json", *([Path(args.results)] if args.results else [])]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
