"""Figures of training runs, from their ``metrics.jsonl`` (finished or still running).

In a figure of several runs the colour is the run and the line style the metric;
a figure of one run gives each metric its own colour. Curves of few points get
markers (an evaluation at the start and the end is two points). Held-out
accuracies are labelled greedy or sampled from the run's ``config.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from apo.tracking import read_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class FigureSpec:
    title: str
    keys: tuple[str, ...] | None  # None: every eval/<set>/accuracy (not .../reward/accuracy)
    smoothed: bool = True
    left_label: str = ""
    right_keys: tuple[str, ...] = ()  # on a twin y axis, log scale when they span > LOG_SPAN
    right_label: str = ""


FIGURES = {
    "reward_accuracy": FigureSpec(
        "Reward and accuracy",
        ("reward/total", "reward/accuracy_rate"),
        left_label="reward, fraction correct",
    ),
    "eval_accuracy": FigureSpec(
        "Held-out accuracy", None, smoothed=False, left_label="accuracy (fraction correct)"
    ),
    "lengths": FigureSpec(
        "Response length (tokens)",
        ("length/correct_mean", "length/incorrect_mean"),
        left_label="tokens per response",
    ),
    "kl": FigureSpec("KL to the reference (k3, token mean)", ("kl/mean",), left_label="KL (nats)"),
    "entropy": FigureSpec(
        "Policy entropy (token mean)", ("entropy/mean",), left_label="entropy (nats)"
    ),
    "dads_stcr": FigureSpec(
        "DADS and STCR weights",
        ("dads/kl_weight_pos_mean", "stcr/penalized_frac"),
        left_label="DADS weight (positive advantages), fraction",
        right_keys=("stcr/weight_penalized_mean",),
        right_label="STCR weight (penalised responses)",
    ),
}
# Legend names of the metrics (their keys in metrics.jsonl are in docs/ALGORITHM.md).
METRIC_LABELS = {
    "reward/total": "reward",
    "reward/accuracy_rate": "fraction correct",
    "length/correct_mean": "correct responses",
    "length/incorrect_mean": "incorrect responses",
    "kl/mean": "KL",
    "entropy/mean": "entropy",
    "dads/kl_weight_pos_mean": "DADS KL weight, positive advantages",
    "stcr/penalized_frac": "fraction penalised by STCR",
    "stcr/weight_penalized_mean": "STCR weight, penalised responses",
}
LINE_STYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]  # one per metric
MARKERS_UP_TO = 20  # points; a longer curve is readable without markers
LOG_SPAN = 100.0  # max / min of the positive values above which an axis is logarithmic
# EvalSetConfig's defaults (apo.evaluation.training), for a config.yaml written by hand;
# importing EvalSetConfig here would load torch into `apo plot`.
EVAL_SET_DEFAULTS = {"temperature": 0.0, "samples_per_question": 1}


@dataclass(frozen=True)
class Run:
    label: str
    records: list[dict[str, Any]]
    config: dict[str, Any]  # the run's config.yaml; empty when absent


def default_labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """The folder names, with as many parent folders as it takes to tell them apart
    (``runs/a/seed0`` and ``runs/b/seed0``: ``a/seed0`` and ``b/seed0``)."""
    parts = [Path(d).resolve().parts for d in run_dirs]
    depth = 1
    while len({p[-depth:] for p in parts}) < len(parts) and depth < max(map(len, parts)):
        depth += 1
    return ["/".join(p[-depth:]) for p in parts]


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.yaml`` as written by the trainer; empty when there is none."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return {}  # the figures still draw; only the greedy/sampled labels are lost
    return config if isinstance(config, dict) else {}


def eval_set_label(name: str, config: dict[str, Any]) -> str:
    """``name (greedy)`` or ``name (sampled, k=K)`` from ``eval.datasets.<name>``;
    the name alone when the config does not define the set."""
    datasets = (config.get("eval") or {}).get("datasets") or {}
    settings = datasets.get(name)
    if not isinstance(settings, dict):
        return name
    settings = {**EVAL_SET_DEFAULTS, **settings}
    if settings["temperature"] == 0:
        return f"{name} (greedy)"
    return f"{name} (sampled, k={settings['samples_per_question']})"


def wants_log_scale(values: Sequence[float]) -> bool:
    """Whether the positive values span more than :data:`LOG_SPAN` (max / min)."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) / min(positive) > LOG_SPAN


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return [s for s, _ in points], [v for _, v in points]


def _smooth(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def _metric_labels(spec: FigureSpec, runs: list[Run]) -> dict[str, str]:
    """The figure's metrics in drawing order, each with its legend label."""
    if spec.keys is not None:
        return {key: METRIC_LABELS.get(key, key) for key in (*spec.keys, *spec.right_keys)}
    found = {  # eval/<set>/accuracy, not eval/<set>/reward/accuracy
        k for run in runs for r in run.records for k in r
        if k.startswith("eval/") and k.endswith("/accuracy") and k.count("/") == 2
    }  # fmt: skip
    labels = {}
    for key in sorted(found):
        name = key.removeprefix("eval/").removesuffix("/accuracy")
        # the first run that defines the set names its decoding (compare's runs share it)
        named = [eval_set_label(name, run.config) for run in runs]
        labels[key] = next((label for label in named if label != name), name)
    return labels


def _style(run_index: int, metric_index: int, overlay: bool) -> dict[str, Any]:
    """Colour by run in an overlay, by metric for a single run; line style by metric."""
    return {
        "color": f"C{(run_index if overlay else metric_index) % 10}",
        "linestyle": LINE_STYLES[metric_index % len(LINE_STYLES)],
    }


def draw_figure(name: str, runs: Sequence[Run], smooth: int = 5) -> Figure:
    """The figure ``FIGURES[name]`` of the runs, overlaid; not saved."""
    from matplotlib.figure import Figure  # a second to import: only when drawing

    spec = FIGURES[name]
    runs = list(runs)
    metrics = _metric_labels(spec, runs)
    overlay = len(runs) > 1
    figure = Figure(figsize=(7, 4))
    left = figure.add_subplot()
    right = None  # the twin axis, once a curve goes there
    drawn: set[str] = set()
    right_values: list[float] = []
    for run_index, run in enumerate(runs):
        for metric_index, (key, label) in enumerate(metrics.items()):
            steps, values = _series(run.records, key)
            if not steps:
                continue
            values = _smooth(values, smooth) if spec.smoothed else values
            axis = left
            if key in spec.right_keys:
                right = left.twinx() if right is None else right
                axis = right
                right_values += values
            axis.plot(
                steps,
                values,
                **_style(run_index, metric_index, overlay),
                marker="o" if len(steps) <= MARKERS_UP_TO else None,
                markersize=3,
                label=f"{run.label}: {label}" if overlay else label,
            )
            drawn.add(key)
    smoothing = f" (moving mean of {smooth})" if spec.smoothed and smooth > 1 else ""
    left.set_title(spec.title + smoothing)
    left.set_xlabel("step")
    from matplotlib.ticker import MaxNLocator

    left.xaxis.set_major_locator(MaxNLocator(integer=True))  # no step 1.5 on short runs
    left.set_ylabel(spec.left_label)
    left.grid(alpha=0.3)
    if right is not None:
        right.set_ylabel(spec.right_label)
        if wants_log_scale(right_values):
            right.set_yscale("log", nonpositive="mask")
    if not drawn:
        left.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=left.transAxes)
    else:
        # one entry per run (its colour) and per metric (its line style), not one per curve
        from matplotlib.lines import Line2D

        handles = []
        if overlay:
            handles += [
                Line2D([], [], color=f"C{i % 10}", label=run.label) for i, run in enumerate(runs)
            ]
        for metric_index, (key, label) in enumerate(metrics.items()):
            if key not in drawn:
                continue
            style = _style(0, metric_index, overlay)
            if overlay:
                style["color"] = "0.3"  # the colour is the run's, not the metric's
            side = " (right axis)" if key in spec.right_keys else ""
            handles.append(Line2D([], [], **style, label=label + side))
        on_top = left if right is None else right  # the legend above both axes' curves
        on_top.legend(handles=handles, fontsize=7)
    figure.tight_layout()
    return figure


def load_runs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[Run]:
    """Each run's metrics and config, under its label (default: :func:`default_labels`)."""
    labels = list(labels) if labels is not None else default_labels(run_dirs)
    return [
        Run(label, read_metrics(d), read_config(d))
        for label, d in zip(labels, run_dirs, strict=True)
    ]


def plot_runs(
    run_dirs: Sequence[str | Path],
    output_dir: str | Path,
    labels: Sequence[str] | None = None,
    smooth: int = 5,
) -> list[Path]:
    """Draw every figure of :data:`FIGURES`, overlaying the runs; returns the PNG paths."""
    runs = load_runs(run_dirs, labels)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FIGURES:
        path = output_dir / f"{name}.png"
        draw_figure(name, runs, smooth).savefig(path, dpi=110)
        written.append(path)
    return written
