"""The trainer's console: a progress bar with ETA, step summaries, evaluation results."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Metrics = dict[str, float]


@contextlib.contextmanager
def training_progress(
    total: int,
    completed: int,
    log_every: int,
    evaluate: Callable[[], Metrics],
    eval_sets: str,
    enabled: bool = True,
) -> Iterator[Any]:
    """Yields ``advance(metrics)``, called after each step, and ``evaluate()``, which
    runs ``evaluate`` with the bar saying so. Disabled (other processes than the
    main one), only ``evaluate`` runs."""
    if not enabled:
        yield SimpleNamespace(advance=lambda metrics: None, evaluate=evaluate)
        return
    columns = (
        TextColumn("step {task.completed}/{task.total}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[summary]}"),
    )
    # log_path=False: no source-file suffix on every logged line
    with Progress(*columns, transient=False, console=Console(log_path=False)) as progress:
        task = progress.add_task("train", total=total, completed=completed, summary="")
        step = completed

        def advance(metrics: Metrics) -> None:
            nonlocal step
            step += 1
            summary = (
                f"reward {metrics['reward/total']:.3f}  "
                f"acc {metrics['reward/accuracy_rate']:.3f}  "
                f"len {metrics['length/mean']:.0f}  kl {metrics.get('kl/mean', 0.0):.4f}"
            )
            progress.update(task, advance=1, summary=summary)
            if step % log_every == 0:
                progress.console.log(f"step {step}: {summary}")

        def evaluate_with_bar() -> Metrics:
            progress.update(task, summary=f"evaluating {eval_sets}...")
            metrics = evaluate()
            progress.update(task, summary="")
            accuracies = "  ".join(
                f"{key.split('/')[1]} {value:.3f}"
                for key, value in metrics.items()
                if key.count("/") == 2 and key.endswith("/accuracy")  # not reward/accuracy
            )
            progress.console.log(f"eval at step {step}: accuracy {accuracies}")
            return metrics

        yield SimpleNamespace(advance=advance, evaluate=evaluate_with_bar)
