"""DeepSpeed under apo's update: what apo refuses, and the settings it owns.

An apo update accumulates a varying number of micro-batches (token budgets)
under its own loss denominators, then clips and steps once. The trainer drives
DeepSpeed's engine for that: ``gradient_accumulation_steps`` 1, the update's
last micro-batch marked as the accumulation boundary, one ``engine.step()``
per update with apo's clip value: :class:`~apo.distributed.DeepSpeedBackend`
(docs/DISTRIBUTED.md).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from apo.config import TrainConfig
from apo.models import vision_tower


def zero_stage(ds_config: dict[str, Any]) -> int:
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


def check_deepspeed_config(ds_config: dict[str, Any]) -> None:
    """ValueError, naming the alternatives, for a ZeRO stage apo cannot train with
    (checked before the model loads)."""
    if zero_stage(ds_config) == 3:
        raise ValueError(
            "DeepSpeed ZeRO-3 is not supported by apo train: it gathers each module's "
            "weights inside the forward pass, so generation (a different number of "
            "passes on each process) and a micro-batch without image (the vision "
            "tower skipped) leave the other processes waiting. Use ZeRO-2 "
            "(configs/accelerate/deepspeed_zero2.yaml) or FSDP2, which shards the "
            "weights too (configs/accelerate/fsdp2.yaml)"
        )


def configure_deepspeed(
    ds_config: dict[str, Any], config: TrainConfig, processes: int, model: nn.Module
) -> None:
    """Check that ``model`` can train under DeepSpeed, then write the settings apo's
    update owns over the user's."""
    tower = vision_tower(model)
    if tower is not None and any(p.requires_grad for p in tower.parameters()):
        raise ValueError(
            "DeepSpeed needs model.freeze_vision_tower: true: ZeRO reduces gradients in "
            "buckets filled in the order they become ready, and a micro-batch without "
            "image gives the vision tower none, so the processes' buckets differ and "
            "the reduction fails. To train the vision tower, use FSDP2 "
            "(configs/accelerate/fsdp2.yaml) or DDP"
        )
    ds_config["gradient_accumulation_steps"] = 1  # apo marks each update's boundary
    ds_config["gradient_clipping"] = config.optim.grad_clip or 0.0
    # DeepSpeed's own bookkeeping: apo's micro-batches are cut by the trainer
    ds_config["train_micro_batch_size_per_gpu"] = config.batch.micro_batch_size
    ds_config["train_batch_size"] = config.batch.micro_batch_size * processes
