"""The optimizer and its learning-rate schedule (AdamW, warmup then decay)."""

from __future__ import annotations

import math

import torch

from apo.config import OptimConfig


def lr_multiplier(update: int, total: int, warmup: int, kind: str, min_ratio: float) -> float:
    """Learning-rate factor of optimizer update ``update`` (0-based).

    Linear warmup reaching 1 at update ``warmup - 1``, then ``constant``,
    ``linear`` or ``cosine`` decay to ``min_ratio`` at the last update.
    """
    if update < warmup:
        return (update + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (update - warmup) / max(1, total - warmup - 1))
    if kind == "linear":
        decay = 1.0 - progress
    elif kind == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown scheduler {kind!r}")
    return min_ratio + (1.0 - min_ratio) * decay


def build_optimizer(
    model: torch.nn.Module, optim: OptimConfig, total_updates: int, device_type: str
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable weights and its schedule, stepped once per update;
    the warmup is ``optim.warmup_ratio`` of ``total_updates``."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters,
        lr=optim.lr,
        betas=optim.betas,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        fused=device_type == "cuda",
    )
    warmup = int(optim.warmup_ratio * total_updates)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda update: lr_multiplier(
            update, total_updates, warmup, optim.scheduler, optim.min_lr_ratio
        ),
    )
    return optimizer, scheduler
