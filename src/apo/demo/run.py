"""``apo demo``: the whole story on a laptop CPU, offline.

1. check every setting, then lock the run folder and empty it (only a new or
   empty folder, or an earlier demo's, is ever emptied);
2. write the synthetic task (train, held-out reasoning test, general test)
   to the run folder in the plain data format;
3. evaluate the start checkpoint (a tiny model warmed up on a noisy teacher),
   or reuse a finished run's evaluation of it (:mod:`apo.demo.start_eval`);
4. train it with APO (or GRPO, or an ablation) with ``apo train``'s trainer;
5. evaluate again, read the greedy answers' reasoning of both models, print a
   before/after table with the noise band of each change, draw the figures and
   write ``report.md`` (:mod:`apo.demo.report`).

The settings and the ``apo train`` config of a run are in :mod:`apo.demo.settings`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from apo.demo.report import CHECK_ROWS, DemoResult, before_after, noise_bands, write_report
from apo.demo.settings import (
    DemoSettings,
    demo_config,
    start_model_path,
    task_files,
    task_splits,
    write_task,
)
from apo.demo.start_eval import reused_start_evaluation
from apo.demo.warmup import prompt_of, reasoning_checks
from apo.models import ModelConfig, load_model
from apo.rollout import DEFAULT_ENGINE, SamplingConfig, build_engine
from apo.run_folder import check_writable, prepare_demo_folder, run_lock
from apo.tracking import read_metrics


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


def run_demo(settings: DemoSettings, *, report: bool = True, overwrite: bool = False) -> DemoResult:
    """Run the demo; returns the before/after numbers and where things were written
    (also saved as the run folder's ``demo_result.json``).

    Every setting is checked before the run folder is touched; the folder must be
    new, empty or an earlier demo's (else ``overwrite``), and is locked for the run.
    """
    from apo.trainer import Trainer

    started = time.perf_counter()
    run_dir = Path(settings.output_dir)
    config = demo_config(settings, task_files(run_dir / "data"), start_model_path())
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
            trainer.tracker.copy_eval_rows(settings.start_eval_from, 0)
        trainer.train()  # closes the trainer, however it ends
        start_checks = start[1] if start else None
        result = _measure(settings, splits["reasoning"], run_dir, started, start_checks)
        if report:
            from apo.plots import plot_runs

            figures = plot_runs([run_dir], run_dir / "plots", labels=[settings.algorithm])
            result = replace(result, report=write_report(run_dir, settings, result, figures))
        (run_dir / "demo_result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        return result


def _measure(
    settings: DemoSettings,
    questions: list[dict[str, Any]],
    run_dir: Path,
    started: float,
    start_checks: dict[str, float] | None,
) -> DemoResult:
    """The first and last evaluation of the finished run in ``run_dir``, with the greedy
    checks of the start model (``start_checks``, or measured now) and of the trained
    one on the reasoning ``questions``."""
    rows = before_after(read_metrics(run_dir), settings.eval_samples)
    checks = [
        start_checks or greedy_checks(start_model_path(), questions, settings.max_new_tokens),
        greedy_checks(run_dir / "final_model", questions, settings.max_new_tokens),
    ]
    for name, key in CHECK_ROWS.items():
        rows[name] = (checks[0][key], checks[1][key])
    return DemoResult(
        before_after=rows,
        noise=noise_bands(rows, settings.eval_samples, settings.questions),
        samples=settings.eval_samples,
        seconds=time.perf_counter() - started,
        run_dir=run_dir,
    )
