"""A step's metrics over every process: gathered responses, reduced sums and maxima.

Each process holds its own share of the step; these functions gather or reduce
it (every process calls them at the same point, with the same keys) and hand
the whole step to the pure functions of :mod:`apo.metrics`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import torch

from apo.algorithms import AlgorithmConfig, ShapedAdvantages
from apo.distributed import Backend
from apo.metrics import memory_metrics, rollout_metrics, throughput
from apo.rewards.runner import FAILURE_KINDS, RewardResult
from apo.rollout import Rollout


@dataclass
class UpdateSums:
    """What one process's updates of a step add up to: metric sums over micro-batches,
    how many micro-batches ran, each applied update's gradient norm, and how many
    updates were skipped for a NaN/inf gradient."""

    sums: dict[str, float] = field(default_factory=dict)
    micro_batches: int = 0
    grad_norms: list[float] = field(default_factory=list)
    skipped: int = 0

    def add(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value


def loss_metrics(result: UpdateSums, updates: int, backend: Backend) -> dict[str, float]:
    """Averages over micro-batches and processes; losses per update (``updates``: how
    many the step ran, epochs included).

    Each micro-batch's loss terms are partial sums of its update's loss (the
    denominator counts the whole update), so summed over micro-batches and
    processes they give the update's loss, then averaged over updates.
    """
    keys = sorted(result.sums)  # the same on every process: same config, same metrics
    values = torch.tensor([result.sums[k] for k in keys] + [result.micro_batches])
    values = backend.reduce(values, "sum").tolist()
    micro_batches = max(values[-1], 1)
    metrics = {
        key: value / (updates if key.startswith("loss/") else micro_batches)
        for key, value in zip(keys, values[:-1], strict=True)
    }
    if result.grad_norms:
        metrics["optim/grad_norm"] = statistics.fmean(result.grad_norms)
    metrics["optim/skipped_updates"] = float(result.skipped)
    return metrics


def step_rollout_metrics(
    rollouts: list[Rollout],
    scored: RewardResult,
    shaped: ShapedAdvantages,
    keep: torch.Tensor,
    timings: dict[str, float],
    group_size: int,
    algorithm: AlgorithmConfig,
    backend: Backend,
) -> dict[str, float]:
    """Step diagnostics over every process's responses (:mod:`apo.metrics`, which reads
    the ``algorithm`` section the step was shaped with), reward failures, phase times
    (the slowest process's), throughput and memory (the fullest process's)."""
    local = {
        "length": torch.tensor([r.length for r in rollouts], dtype=torch.float32),
        "truncated": torch.tensor([r.truncated for r in rollouts], dtype=torch.float32),
        "correct": scored.correct.float(),
        "total": scored.total,
        "difficulty": shaped.difficulty,
        "raw_advantage": shaped.raw_advantages,
        "advantage": shaped.advantages,
        "kl_weight": shaped.kl_weights,
        "stcr_weight": shaped.stcr_weights,
        "kept": keep.float(),
        **{f"reward/{name}": value for name, value in scored.components.items()},
    }
    gathered = {key: backend.gather(value) for key, value in local.items()}
    metrics = rollout_metrics(gathered, group_size, algorithm)
    # Reward failures: every process reduces the same vector, whatever failed where.
    keys = [(name, kind) for name in scored.components for kind in FAILURE_KINDS]
    counts = torch.tensor([float(scored.failures[n][k]) for n, k in keys])
    for (name, kind), value in zip(keys, backend.reduce(counts, "sum").tolist(), strict=True):
        metrics[f"reward/{name}/{kind}"] = value
    metrics |= _maxima(timings, backend)  # time: the slowest process sets the pace
    metrics |= throughput(gathered["length"].sum().item(), metrics)
    metrics |= _maxima(memory_metrics(backend.device), backend)
    return metrics


def _maxima(values: dict[str, float], backend: Backend) -> dict[str, float]:
    reduced = backend.reduce(torch.tensor(list(values.values())), "max").tolist()
    return dict(zip(values, reduced, strict=True))
