"""Where metrics go: ``metrics.jsonl`` always, tensorboard and wandb when enabled,
a readable sample of completions per step in ``samples.jsonl``, and every answer
of the periodic evaluations in ``evals.jsonl``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _json_value(value: float) -> float | None:
    # JSON has no NaN: an undefined mean (e.g. no positive sample) is written as null.
    return value if math.isfinite(value) else None


class RunTracker:
    """Appends one JSON object per step to ``metrics.jsonl`` (only on the main process)."""

    def __init__(
        self,
        run_dir: Path,
        config: dict[str, Any],
        *,
        enabled: bool = True,
        tensorboard: bool = False,
        wandb: bool = False,
        wandb_project: str = "apo",
        wandb_mode: str = "offline",
    ) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._tensorboard = None
        self._wandb = None
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.samples_path = self.run_dir / "samples.jsonl"
        self.evals_path = self.run_dir / "evals.jsonl"
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # an optional extra
            except ImportError as error:
                raise RuntimeError(
                    "logging.tensorboard is on but tensorboard is not installed: "
                    "pip install 'apo-rl[tracking]'"
                ) from error
            self._tensorboard = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        if wandb:
            try:
                import wandb as wandb_module  # an optional extra
            except ImportError as error:
                raise RuntimeError(
                    "logging.wandb is on but wandb is not installed: pip install 'apo-rl[tracking]'"
                ) from error
            self._wandb = wandb_module.init(
                project=wandb_project, mode=wandb_mode, dir=str(self.run_dir), config=config
            )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: _json_value(float(v)) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        finite = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        if self._tensorboard is not None:
            for key, value in finite.items():
                self._tensorboard.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(finite, step=step)

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        self._append(self.samples_path, [{"step": step, **sample} for sample in samples])

    def log_eval_rows(self, step: int, name: str, rows: list[dict[str, Any]]) -> None:
        """Every answer of evaluation set ``name`` at ``step``, one line each (the rows
        of :func:`apo.evaluation.answers.answer_questions`): what the summary in
        ``metrics.jsonl`` was computed from, for reading answers or pairing questions."""
        self._append(self.evals_path, [{"step": step, "set": name, **row} for row in rows])

    def copy_eval_rows(self, source: str | Path, step: int) -> None:
        """The answers of run ``source``'s evaluation at ``step``, as they are: an
        evaluation this run reuses instead of repeating (``--start-eval-from``)."""
        self._append(self.evals_path, read_eval_rows(source, step))

    def _append(self, path: Path, records: list[dict[str, Any]]) -> None:
        if not self.enabled or not records:
            return
        with path.open("a") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step`` (a resumed run redoes them), and a last
        line cut short by a kill. Rewritten atomically: a kill now loses nothing."""
        if not self.enabled:
            return
        for path in (self.metrics_path, self.samples_path, self.evals_path):
            if not path.exists():
                continue
            kept = []
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # only the last line can be partial: written when killed
                if record["step"] <= step:
                    kept.append(line)
            partial = path.with_name(f".{path.name}.tmp")
            partial.write_text("".join(line + "\n" for line in kept))
            os.replace(partial, path)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()


def sample_records(
    examples: Sequence[Any], rollouts: Sequence[Any], scored: Any, shaped: Any
) -> list[dict[str, Any]]:
    """The first ``len(rollouts)`` responses of a step as ``samples.jsonl`` records:
    the row, the response, its reward, correctness, length, advantage and weights.
    ``scored`` is the step's :class:`apo.rewards.RewardResult`, ``shaped`` its
    :class:`apo.algorithms.ShapedAdvantages`."""
    records = []
    for i, rollout in enumerate(rollouts):
        example = examples[rollout.prompt_index]
        records.append(
            {
                "id": example.id,
                "question": example.question,
                "answer": example.answer,
                "response": rollout.text,
                "reward": float(scored.total[i]),
                "correct": bool(scored.correct[i]),
                "length": rollout.length,
                "advantage": float(shaped.advantages[i]),
                "kl_weight": float(shaped.kl_weights[i]),
                "stcr_weight": float(shaped.stcr_weights[i]),
            }
        )
    return records


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``."""
    return _records(Path(run_dir) / "metrics.jsonl")


def read_eval_rows(run_dir: str | Path, step: int | None = None) -> list[dict[str, Any]]:
    """The answers of a run's ``evals.jsonl`` (with ``step``, those of that step's
    evaluation); none for a run that never evaluated or predates the file."""
    path = Path(run_dir) / "evals.jsonl"
    rows = _records(path) if path.exists() else []
    return [row for row in rows if step is None or row["step"] == step]


def _records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines log, one per non-empty line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
