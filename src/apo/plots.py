"""Figures of training runs, from their ``metrics.jsonl`` (finished or still running)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from apo.tracking import read_metrics

FIGURES = {
    "reward_accuracy": ("Reward and accuracy", ["reward/total", "reward/accuracy_rate"], True),
    "eval_accuracy": ("Held-out accuracy", None, False),  # every eval/*/accuracy
    "lengths": ("Response length (tokens)", ["length/correct_mean", "length/incorrect_mean"], True),
    "kl": ("KL to the reference (k3, token mean)", ["kl/mean"], True),
    "entropy": ("Policy entropy (token mean)", ["entropy/mean"], True),
    "dads_stcr": (
        "DADS and STCR weights",
        ["dads/kl_weight_pos_mean", "stcr/weight_penalized_mean", "stcr/penalized_frac"],
        True,
    ),
}


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return [s for s, _ in points], [v for _, v in points]


def _smooth(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def plot_runs(
    run_dirs: Sequence[str | Path],
    output_dir: str | Path,
    labels: Sequence[str] | None = None,
    smooth: int = 5,
) -> list[Path]:
    """Draw every figure of :data:`FIGURES`, overlaying the runs; returns the PNG paths."""
    import matplotlib  # a second to import: only when drawing

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [Path(d) for d in run_dirs]
    labels = list(labels) if labels is not None else [d.name for d in runs]
    records = [read_metrics(d) for d in runs]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (title, keys, smoothed) in FIGURES.items():
        figure, axis = plt.subplots(figsize=(7, 4))
        drawn = 0
        for label, run_records in zip(labels, records, strict=True):
            run_keys = keys
            if run_keys is None:
                found = {
                    k
                    for r in run_records
                    for k in r
                    if k.startswith("eval/") and k.endswith("/accuracy")
                }
                run_keys = sorted(found)
            for key in run_keys:
                steps, values = _series(run_records, key)
                if not steps:
                    continue
                values = _smooth(values, smooth) if smoothed else values
                short = key.removeprefix("eval/").removesuffix("/accuracy") if keys is None else key
                axis.plot(steps, values, label=f"{label}: {short}" if len(runs) > 1 else short)
                drawn += 1
        axis.set_title(title + (f" (moving mean of {smooth})" if smoothed and smooth > 1 else ""))
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if drawn:
            axis.legend(fontsize=7)
        else:
            axis.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=axis.transAxes)
        figure.tight_layout()
        path = output_dir / f"{name}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written
