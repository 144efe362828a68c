"""How a run's processes accumulate, average, clip and apply gradients.

One :class:`Backend` per run, chosen by :func:`prepare` from what accelerate
wrapped the model in:

- :class:`Backend`: one process (or whatever accelerate wraps itself); the
  gradient is accelerate's, synced in the update's last backward;
- :class:`DDPBackend`: several DDP processes accumulate locally, agree that none
  failed (:mod:`apo.agreement`), then average once, so no process waits in a
  gradient all-reduce that another, having failed, never reaches;
- :class:`FSDP2Backend`: each micro-batch's gradient is reduce-scattered (no
  process holds a whole unsharded gradient);
- :class:`DeepSpeedBackend`: DeepSpeed's engine backward and step, the update's
  last micro-batch marked as its accumulation boundary (:mod:`.deepspeed`).

Every backend also carries the collectives the loop needs (``reduce``,
``gather``, ``gather_objects``, ``agreed``), so the loop holds no accelerate
call of its own.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, gather_object
from torch import Tensor, nn

from apo.agreement import all_reduce_mean_gradients, run_agreed
from apo.config import TrainConfig
from apo.distributed.deepspeed import check_deepspeed_config, configure_deepspeed
from apo.models import check_sharding, fsdp_modules

T = TypeVar("T")
R = TypeVar("R")


class Backend:
    """One process, or a backend that accelerate syncs itself: accumulate without
    sync, sync in the update's last backward."""

    def __init__(self, accelerator: Accelerator, model: nn.Module, optimizer: Any) -> None:
        self.accelerator = accelerator
        self.model = model
        self.optimizer = optimizer

    # ------------------------------------------------------------------ processes

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def retries_together(self) -> bool:
        """Whether every process can retry a failed (out-of-memory) pass in step with
        the others: with one process, or when processes agree on failures first."""
        return self.processes == 1

    shares_prompts = True  # batch.share_prompts: two forward passes per backward

    def reduce(self, tensor: Tensor, op: str) -> Tensor:
        """``tensor`` reduced over processes (``sum``, ``mean`` or ``max``)."""
        return self.accelerator.reduce(tensor.to(self.device), op)

    def gather(self, tensor: Tensor) -> Tensor:
        """Every process's ``tensor``, concatenated in process order (on the CPU)."""
        return self.accelerator.gather(tensor.to(self.device)).cpu()

    def gather_objects(self, objects: list[Any]) -> list[Any]:
        """Every process's ``objects``, concatenated in process order."""
        return gather_object(objects)

    def agreed(self, attempt: Callable[[], T]) -> T:
        """``attempt()``; with several processes, a failure on any is raised on all."""
        return run_agreed(attempt, gather_object, self.processes)

    # ------------------------------------------------------------------ gradients

    def accumulate(self, items: Sequence[T], run: Callable[[T], R]) -> list[R]:
        """``run(item)`` (a forward and :meth:`backward`) for each micro-batch of an
        update; afterwards the gradient is the update's, over every process."""
        results = []
        for index, item in enumerate(items):
            with self.micro_batch(last=index == len(items) - 1):
                results.append(run(item))
        return results

    def micro_batch(self, last: bool) -> contextlib.AbstractContextManager:
        """The context of one micro-batch's forward and backward."""
        return contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)

    def backward(self, loss: Tensor) -> None:
        """Backward of one micro-batch's loss. Backends average gradients over
        processes; apo's denominators already count every process's responses,
        so that average is undone."""
        self.accelerator.backward(loss * self.processes)

    def clip_and_step(self, max_norm: float | None) -> float:
        """The update's global gradient norm (every process agrees on it); when it is
        finite, the gradient is clipped to ``max_norm`` and applied."""
        limit = max_norm if max_norm is not None else math.inf
        norm = float(self.accelerator.clip_grad_norm_(self.model.parameters(), limit))
        if math.isfinite(norm):
            self.optimizer.step()
        return norm


class DDPBackend(Backend):
    """Several DDP processes: gradients averaged once per update, after agreeing that
    no process failed (:mod:`apo.agreement`)."""

    retries_together = True

    def accumulate(self, items: Sequence[T], run: Callable[[T], R]) -> list[R]:
        results = self.agreed(lambda: super(DDPBackend, self).accumulate(items, run))
        all_reduce_mean_gradients(self.model.parameters(), lambda t: self.reduce(t, "mean"))
        return results

    def micro_batch(self, last: bool) -> contextlib.AbstractContextManager:
        return self.accelerator.no_sync(self.model)  # averaged once, in accumulate


class FSDP2Backend(Backend):
    """FSDP2 reduces each micro-batch's gradients: accumulating them unsynced would
    hold a whole unsharded gradient per process, what FSDP avoids."""

    shares_prompts = False

    def __init__(self, accelerator: Accelerator, model: nn.Module, optimizer: Any) -> None:
        super().__init__(accelerator, model, optimizer)
        for module in fsdp_modules(model):
            # A process whose micro-batch has no image leaves the vision tower
            # without gradients; the others do not: reduce zeros for it.
            module.set_reduce_scatter_unused_params(True)

    def micro_batch(self, last: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


class DeepSpeedBackend(Backend):
    """DeepSpeed's engine accumulates up to the boundary apo marks, then clips (its
    ``gradient_clipping`` is apo's) and skips a NaN/inf gradient itself."""

    shares_prompts = False

    @contextlib.contextmanager
    def micro_batch(self, last: bool) -> Iterator[None]:
        self.model.set_gradient_accumulation_boundary(last)
        yield

    def backward(self, loss: Tensor) -> None:
        # the engine's own: accelerate's would step the optimizer here
        self.model.backward(loss * self.processes)

    def clip_and_step(self, max_norm: float | None) -> float:
        self.model.step()
        if not self.model.was_step_applied():
            return math.nan
        return float(self.model.get_global_grad_norm())


def build_accelerator(precision: str) -> Accelerator:
    """The processes' accelerator; a DeepSpeed configuration apo cannot train with is
    refused now, before the model loads."""
    # Several processes without a GPU: accelerate wants cpu=True to use gloo.
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # A micro-batch without images leaves the vision tower without gradients:
    # DDP must look for unused parameters, or processes fall out of step. No
    # buffer broadcast before each forward (a language model's buffers, rotary
    # frequencies, are the same everywhere): forward passes then hold no
    # collective, so a process that failed mid-update cannot strand the others
    # in one (apo.agreement).
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True, broadcast_buffers=False)
    accelerator = Accelerator(mixed_precision=precision, cpu=multi_cpu, kwargs_handlers=[ddp])
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        check_deepspeed_config(accelerator.state.deepspeed_plugin.deepspeed_config)
    return accelerator


def prepare(
    accelerator: Accelerator, config: TrainConfig, model: nn.Module, optimizer: Any
) -> tuple[nn.Module, Any, Backend]:
    """The model and optimizer wrapped for this run's processes, and its backend."""
    deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
    if deepspeed:
        configure_deepspeed(
            accelerator.state.deepspeed_plugin.deepspeed_config,
            config,
            accelerator.num_processes,
            model,
        )
    model, optimizer = accelerator.prepare(model, optimizer)
    check_sharding(model, lora=config.lora.enabled)
    if deepspeed:
        backend = DeepSpeedBackend(accelerator, model, optimizer)
    elif isinstance(model, nn.parallel.DistributedDataParallel):
        backend = DDPBackend(accelerator, model, optimizer)
    elif fsdp_modules(model):
        backend = FSDP2Backend(accelerator, model, optimizer)
    else:
        backend = Backend(accelerator, model, optimizer)
    if config.batch.share_prompts and not backend.shares_prompts:
        raise ValueError(
            "batch.share_prompts is not supported with FSDP2 or DeepSpeed (two forward "
            "passes per backward, untested with sharded engines): set "
            "batch.share_prompts=false"
        )
    return model, optimizer, backend
