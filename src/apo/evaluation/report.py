"""Summaries of per-question results, markdown tables, and side-by-side comparison.

A results row is one sampled response (:mod:`apo.evaluation.answers`): ``id``,
``sample``, ``correct``, ``length``, ``truncated``, ``formatted``, and
optionally ``categories``, ``ground_truth_error`` and ``rewards``. With K
samples per question:

- ``accuracy`` is mean@K: the mean over questions of the fraction of correct
  samples (with K = 1, plain accuracy; it estimates pass@1);
- ``pass@K`` is the fraction of questions with at least one correct sample
  (the unbiased estimator 1 - C(n-c, k) / C(n, k) with k = n).

:func:`summarize` is the one place the metric names are made, for ``apo eval``
and the trainer's evaluations alike (docs/EVALUATION.md lists them).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """Unbiased pass@k from ``correct`` right answers among ``samples`` (Chen et al.)."""
    if not 1 <= k <= samples:
        raise ValueError(f"pass@{k} needs 1 <= k <= samples ({samples})")
    if samples - correct < k:
        return 1.0
    return 1.0 - math.comb(samples - correct, k) / math.comb(samples, k)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy (mean@K), pass@K, per-category accuracy, lengths, truncation and
    format rates of one evaluation set's results, and the mean of each reward
    component (``reward/<name>``) when the rows were judged by the rewards."""
    by_question: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_question[row["id"]].append(row)
    if not by_question:
        raise ValueError("no results to summarize")
    k = min(len(samples) for samples in by_question.values())
    scores, passes = {}, []
    for qid, samples in by_question.items():
        right = sum(bool(s["correct"]) for s in samples)
        scores[qid] = right / len(samples)
        passes.append(pass_at_k(len(samples), right, k))
    every = [s for samples in by_question.values() for s in samples]
    categories: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for qid, samples in by_question.items():
        for name, values in samples[0].get("categories", {}).items():
            for value in values:
                categories[name][value].append(scores[qid])
    summary = {
        "questions": len(by_question),
        "samples_per_question": k,
        "accuracy": statistics.fmean(scores.values()),
        f"pass@{k}": statistics.fmean(passes),
        "format_rate": statistics.fmean(bool(s["formatted"]) for s in every),
        "truncated_rate": statistics.fmean(bool(s["truncated"]) for s in every),
        "length_mean": statistics.fmean(s["length"] for s in every),
        "length_correct_mean": _mean([s["length"] for s in every if s["correct"]]),
        "length_incorrect_mean": _mean([s["length"] for s in every if not s["correct"]]),
        "unreadable_ground_truth": sum(bool(s.get("ground_truth_error")) for s in every),
        "categories": {
            name: {
                value: {"accuracy": statistics.fmean(accs), "questions": len(accs)}
                for value, accs in sorted(values.items())
            }
            for name, values in categories.items()
        },
    }
    for name in every[0].get("rewards", {}):
        summary[f"reward/{name}"] = statistics.fmean(s["rewards"][name] for s in every)
    return summary


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _tokens(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown_summary(summary: dict[str, Any]) -> str:
    """The summary of a whole evaluation (every benchmark) as markdown tables."""
    lines = [f"# Evaluation of `{summary['model']}`", ""]
    lines += [
        "| benchmark | questions | accuracy (mean@k) | pass@k | format | truncated | "
        "length correct | length incorrect |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in summary["benchmarks"].items():
        k = result["samples_per_question"]
        lines.append(
            f"| {name} | {result['questions']} | {_percent(result['accuracy'])} (k={k}) | "
            f"{_percent(result[f'pass@{k}'])} | {_percent(result['format_rate'])} | "
            f"{_percent(result['truncated_rate'])} | {_tokens(result['length_correct_mean'])} | "
            f"{_tokens(result['length_incorrect_mean'])} |"
        )
    for name, result in summary["benchmarks"].items():
        for field, values in result["categories"].items():
            lines += ["", f"## {name}: accuracy by {field}", "", "| value | questions | accuracy |"]
            lines.append("|---|---|---|")
            for value, entry in values.items():
                lines.append(f"| {value} | {entry['questions']} | {_percent(entry['accuracy'])} |")
    return "\n".join(lines) + "\n"


def load_summary(path: str | Path) -> dict[str, Any]:
    """A ``summary.json``, given it or the evaluation folder that holds it."""
    path = Path(path)
    file = path / "summary.json" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{path}: no summary.json (run apo eval first)")
    return json.loads(file.read_text())


# The settings of ``apo eval`` that change what an accuracy means: results made
# under different ones are not directly comparable.
COMPARABILITY_KEYS = (
    "prompt.system_prompt",
    "prompt.question_template",
    "max_new_tokens",
    "samples_per_question",
    "temperature",
    "top_p",
)


class _NotRecorded:
    def __repr__(self) -> str:
        return "not recorded"


NOT_RECORDED: Any = _NotRecorded()


def effective_temperature(temperature: float | None, samples_per_question: int) -> float:
    """The sampling temperature used: None is greedy (0) for one sample, 1.0 for several."""
    if temperature is not None:
        return temperature
    return 0.0 if samples_per_question == 1 else 1.0


def _lookup(settings: Mapping[str, Any], key: str) -> Any:
    value: Any = settings
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return NOT_RECORDED
        value = value[part]
    return value


def settings_differences(
    settings_by_run: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> dict[str, list[Any]]:
    """The ``keys`` (dotted, ``prompt.system_prompt``) whose values are not the same in
    every run: key -> the value of each run, in order (``NOT_RECORDED`` where a run's
    settings lack it)."""
    differences = {}
    for key in keys:
        values = [_lookup(settings, key) for settings in settings_by_run]
        if any(value != values[0] for value in values[1:]):
            differences[key] = values
    return differences


def _setting(value: Any) -> str:
    if value is NOT_RECORDED:
        return "not recorded"
    if value is None:
        return "none"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def comparability_warning(summaries: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    """A warning naming each setting of :data:`COMPARABILITY_KEYS` the runs differ in,
    with each run's value (temperature as used); empty when they agree."""
    settings = []
    for summary in summaries:
        recorded = dict(summary.get("settings", {}))
        if "temperature" in recorded and "samples_per_question" in recorded:
            recorded["temperature"] = effective_temperature(
                recorded["temperature"], recorded["samples_per_question"]
            )
        settings.append(recorded)
    differences = settings_differences(settings, COMPARABILITY_KEYS)
    if not differences:
        return ""
    lines = [
        "warning: these runs were evaluated under different settings; "
        "their accuracies are not directly comparable:"
    ]
    for key, values in differences.items():
        per_run = ", ".join(
            f"{label} = {_setting(v)}" for label, v in zip(labels, values, strict=True)
        )
        lines.append(f"- {key}: {per_run}")
    return "\n".join(lines) + "\n\n"


def compare_table(summaries: list[dict[str, Any]], labels: list[str]) -> str:
    """Accuracy per benchmark, one column per run, and each run's difference from
    the first (as in the paper's tables), with the average over shared benchmarks."""
    names: list[str] = []
    for summary in summaries:
        names += [n for n in summary["benchmarks"] if n not in names]
    header = ["benchmark", *labels] + [f"Δ {label}" for label in labels[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    shared = [n for n in names if all(n in s["benchmarks"] for s in summaries)]
    rows = [(n, [s["benchmarks"].get(n, {}).get("accuracy") for s in summaries]) for n in names]
    if len(shared) > 1:
        averages = [
            statistics.fmean(s["benchmarks"][n]["accuracy"] for n in shared) for s in summaries
        ]
        rows.append(("average", averages))
    for name, values in rows:
        cells = [_percent(v) for v in values]
        base = values[0]
        for value in values[1:]:
            if base is None or value is None:
                cells.append("-")
            else:
                cells.append(f"{100 * (value - base):+.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
