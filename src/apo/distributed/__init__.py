"""The distributed layer: one process, DDP, FSDP2 or DeepSpeed behind one interface.

:func:`build_accelerator` starts the processes' accelerator (and refuses a
DeepSpeed configuration apo cannot train with, before the model loads);
:func:`prepare` wraps the model and optimizer and chooses the run's
:class:`Backend` once. The training loop then only calls the backend
(``accumulate``, ``backward``, ``clip_and_step``, ``reduce``...) and never asks
which one it runs on.
"""

from apo.distributed.backends import (
    Backend,
    DDPBackend,
    DeepSpeedBackend,
    FSDP2Backend,
    build_accelerator,
    prepare,
)
from apo.distributed.deepspeed import check_deepspeed_config, configure_deepspeed, zero_stage

__all__ = [
    "Backend",
    "DDPBackend",
    "DeepSpeedBackend",
    "FSDP2Backend",
    "build_accelerator",
    "check_deepspeed_config",
    "configure_deepspeed",
    "prepare",
    "zero_stage",
]
