"""Step diagnostics from the per-response values of a rollout (all processes).

Pure functions of tensors, so they can be checked by hand and reused by any
loop. Names say what they measure (CleanRL style): ``length/incorrect_mean``,
``dads/kl_weight_pos_mean``, ``difficulty/solved_3_of_8``...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from apo.algorithms import AlgorithmConfig, shaping_metrics


def _mean(values: Tensor) -> float:
    """Mean, or NaN (written as null) when there is nothing to average."""
    return values.float().mean().item() if values.numel() else float("nan")


def _median(values: Tensor) -> float:
    return values.float().median().item() if values.numel() else float("nan")


def rollout_metrics(
    values: dict[str, Tensor],
    group_size: int,
    config: AlgorithmConfig | None = None,
    **settings: Any,
) -> dict[str, float]:
    """Diagnostics of one rollout: those of the shaping
    (:func:`apo.algorithms.shaping_metrics`), plus lengths, rewards and the
    difficulty distribution.

    Args:
        values: [N] tensors, grouped by prompt (G each): ``length``, ``truncated``,
            ``correct``, ``total`` (reward), ``difficulty``, ``raw_advantage``,
            ``advantage``, ``kl_weight``, ``stcr_weight``, ``kept``, and
            ``reward/<name>`` per reward component.
        group_size: G.
        config: the settings the rollout was shaped with (the trainer's ``algorithm``
            section; official when None), read by the shaping's metrics as by the
            shaping itself; ``settings``: its fields as keywords, over it.
    """
    length, correct = values["length"].float(), values["correct"].bool()
    total, advantage = values["total"].float(), values["advantage"].float()
    shaping = shaping_metrics(
        total,
        correct,
        values["difficulty"],
        values["raw_advantage"].float(),
        advantage,
        values["kl_weight"].float(),
        values["stcr_weight"].float(),
        group_size,
        config,
        **settings,
    )
    metrics = {key: value.item() for key, value in shaping.items()}
    metrics |= {
        "reward/total": _mean(total),
        "reward/accuracy_rate": _mean(correct),
        "length/mean": _mean(length),
        "length/correct_mean": _mean(length[correct]),
        "length/incorrect_mean": _mean(length[~correct]),
        "length/correct_median": _median(length[correct]),
        "length/incorrect_median": _median(length[~correct]),
        "length/truncated_frac": _mean(values["truncated"]),
        "groups/filtered_frac": 1.0 - _mean(values["kept"]),
    }
    for key, value in values.items():
        if key.startswith("reward/"):
            metrics[key] = _mean(value)
    # The difficulty distribution: the fraction of groups with k right answers.
    solved = correct.reshape(-1, group_size).sum(dim=1)
    for k in range(group_size + 1):
        metrics[f"difficulty/solved_{k}_of_{group_size}"] = _mean(solved == k)
    return metrics


def throughput(generated_tokens: float, seconds: dict[str, float]) -> dict[str, float]:
    """Generated tokens per second of generation and of the whole step."""
    return {
        "throughput/generated_tokens_per_s": generated_tokens
        / max(seconds["time/generation"], 1e-9),
        "throughput/step_tokens_per_s": generated_tokens / max(seconds["time/step"], 1e-9),
    }


def resident_bytes() -> int | None:
    """This process's resident memory in bytes (Linux ``/proc/self/statm``), else None."""
    statm = Path("/proc/self/statm")
    if not statm.is_file():
        return None
    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_metrics(device: torch.device) -> dict[str, float]:
    """This process's resident memory now (Linux), and the accelerator's peak since
    the last call (then reset), in MiB."""
    metrics = {}
    resident = resident_bytes()
    if resident is not None:
        metrics["memory/rss_mib"] = resident / 2**20
    if device.type == "cuda":
        metrics["memory/gpu_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    return metrics
