"""Reach the model inside the wrappers that distributed training and compile add."""

from __future__ import annotations

from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP / DataParallel / DeepSpeed (``.module``) and torch.compile
    (``._orig_mod``).

    A peft model is *not* unwrapped: its adapters are part of the policy.
    """
    while True:
        # (DeepSpeed's engine by name: no deepspeed import for the check)
        wrapped = type(model).__name__ == "DeepSpeedEngine" or isinstance(
            model, (nn.parallel.DistributedDataParallel, nn.DataParallel)
        )
        if wrapped:
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
