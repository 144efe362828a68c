"""What an ``apo demo`` run measured: the typed result, the before/after table with the
noise band of each change, and ``report.md``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for the type alone: the settings' module loads the task's images (PIL)
    from apo.demo.settings import DemoSettings

BeforeAfter = tuple[float | None, float | None]
"""A row's value at the first and the last evaluation; None where it was not measured."""


@dataclass(frozen=True)
class DemoResult:
    """The before/after numbers of a demo run and where it wrote things."""

    before_after: dict[str, BeforeAfter]  # row name: (first, last evaluation)
    noise: dict[str, float]  # row name: its noise band (rates only)
    samples: int  # sampled answers per question: the k of pass@k
    seconds: float  # wall time of the whole run
    run_dir: Path
    report: Path | None = None  # report.md, when written

    def to_json(self) -> dict[str, Any]:
        """The layout of the run folder's ``demo_result.json``."""
        saved = {
            "before_after": self.before_after,
            "noise": self.noise,
            "samples": self.samples,
            "seconds": self.seconds,
            "run_dir": str(self.run_dir),
        }
        if self.report is not None:
            saved["report"] = str(self.report)
        return saved


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


def before_after(records: list[dict[str, Any]], samples: int) -> dict[str, BeforeAfter]:
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


def question_scores(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each question's fraction of correct answers, from evaluation rows (``evals.jsonl``:
    one per answer, with the question's ``id`` and ``correct``)."""
    answers: dict[str, list[bool]] = {}
    for row in rows:
        answers.setdefault(row["id"], []).append(bool(row["correct"]))
    return {question: sum(right) / len(right) for question, right in answers.items()}


def question_changes(before: dict[str, float], after: dict[str, float]) -> list[float]:
    """``after_q - before_q`` for each question q scored both times."""
    return [after[q] - before[q] for q in before.keys() & after.keys()]


def paired_noise_band(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Two standard errors of the mean change per question, the same questions measured
    twice: with d_q = after_q - before_q over the n questions in both,
    2 * sd(d) / sqrt(n) (sd with n - 1). None for fewer than two questions.

    Unlike :func:`noise_band` it counts the questions' agreement with themselves: a
    question right (or wrong) both times adds no noise, so the band is tighter, and it
    is the right band for a change measured on one question set.
    """
    changes = question_changes(before, after)
    if len(changes) < 2:
        return None
    mean = sum(changes) / len(changes)
    variance = sum((d - mean) ** 2 for d in changes) / (len(changes) - 1)
    return 2 * math.sqrt(variance / len(changes))


def noise_bands(
    rows: dict[str, BeforeAfter], samples: int, questions: dict[str, int]
) -> dict[str, float]:
    """The noise band of each rate row measured twice; the checks of the reasoning
    count the reasoning questions. ``questions``: per split, its number of questions."""
    columns = eval_columns(samples)
    noise = {}
    for name, (before, after) in rows.items():
        split = columns[name].split if name in columns else "reasoning"
        if split is not None and before is not None and after is not None:
            noise[name] = noise_band(before, after, questions[split])
    return noise


def format_value(value: float | None, percent: bool) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if percent else f"{value:.1f}"


def table_rows(result: DemoResult) -> list[tuple[str, str, str, str, str]]:
    """(name, before, after, change, noise) cells of the before/after table."""
    percent_rows = {name for name, col in eval_columns(result.samples).items() if col.percent}
    percent_rows |= set(CHECK_ROWS)
    cells = []
    for name, (before, after) in result.before_after.items():
        percent = name in percent_rows
        band = result.noise.get(name)
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


def changes_beyond_noise(result: DemoResult) -> dict[str, list[str]]:
    """The rows whose change is larger than its noise band, as "name: +x points (± b)",
    under "better" or "worse" (every row with a band is a rate where higher is better:
    an accuracy, or a check of the reasoning)."""
    changes: dict[str, list[str]] = {"better": [], "worse": []}
    for name, (before, after) in result.before_after.items():
        band = result.noise.get(name)
        if band is None or before is None or after is None or abs(after - before) <= band:
            continue
        text = f"{name} {100 * (after - before):+.1f} points (± {100 * band:.1f})"
        changes["better" if after > before else "worse"].append(text)
    return changes


def changes_summary(result: DemoResult) -> str:
    """One sentence naming every change beyond its noise band, good or bad."""
    changes = changes_beyond_noise(result)
    if not changes["better"] and not changes["worse"]:
        return "No change is beyond its noise band."
    parts = [f"{kind}: {'; '.join(rows)}" for kind, rows in changes.items() if rows]
    return "Beyond the noise band, " + "; ".join(parts) + "."


def table_markdown(result: DemoResult) -> str:
    lines = [
        "| | before | after | change | noise (2 SE) |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    return "\n".join(lines)


def write_report(
    run_dir: Path, settings: DemoSettings, result: DemoResult, figures: list[Path]
) -> Path:
    """``report.md`` of the run folder: the setup, the table, the changes beyond the
    noise and the figures."""
    variant = settings.algorithm.upper()
    if settings.dads is not None or settings.stcr is not None:
        variant += f" (dads={settings.dads}, stcr={settings.stcr})"
    text = [
        f"# apo demo: {variant} on the synthetic visual reasoning task",
        "",
        f"Seed {settings.seed}, {settings.steps} steps of {settings.prompts_per_step} prompts x "
        f"{settings.group_size} samples, {result.seconds / 60:.1f} minutes. Start: the tiny "
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
        "`evals.jsonl` (every answer of the evaluations), "
        "`final_model/` (loadable with `from_pretrained`), `data/` (the task).",
        "",
    ]
    path = run_dir / "report.md"
    path.write_text("\n".join(text))
    return path
