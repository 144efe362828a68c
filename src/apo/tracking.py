"""Where metrics go: ``metrics.jsonl`` always, tensorboard and wandb when enabled,
and a readable sample of completions per step in ``samples.jsonl``."""

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
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.samples_path = self.run_dir / "samples.jsonl"
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
        if not self.enabled or not samples:
            return
        with self.samples_path.open("a") as handle:
            for sample in samples:
                handle.write(json.dumps({"step": step, **sample}, ensure_ascii=False) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step`` (a resumed run redoes them), and a last
        line cut short by a kill. Rewritten atomically: a kill now loses nothing."""
        if not self.enabled:
            return
        for path in (self.metrics_path, self.samples_path):
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
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
