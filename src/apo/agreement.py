"""Processes that fail together: a failure on one process becomes the same error on all.

With several processes, an error on one of them (out of memory, a broken reward
pool) would leave the others waiting in their next collective until its timeout
(30 minutes by default), with the failing process's message lost among the
others' timeout traces. Instead, the trainer runs each phase that can fail on one
process alone inside :func:`run_agreed`: every process reports (failure or not)
at the end of the phase, and all raise the same error there, naming the process
it came from. An out-of-memory error stays one (``torch.OutOfMemoryError``), so
every process halves its batches and retries in step; any other failure becomes
an :class:`AgreedFailure`, after which every process saves the same checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import torch

from apo.out_of_memory import OutOfMemory, is_out_of_memory

T = TypeVar("T")

Report = tuple[str, str] | None  # (kind, message) of a process's failure, or None


class AgreedFailure(RuntimeError):
    """A phase failed on some process; every process raises this, with its message."""


def report_of(failure: BaseException | None) -> Report:
    """What a process tells the others about its failure."""
    if failure is None:
        return None
    if isinstance(failure, OutOfMemory):
        kind = "out-of-memory-final"  # the retries are spent: stop
    elif is_out_of_memory(failure):
        kind = "out-of-memory"
    else:
        kind = "error"
    return kind, f"{type(failure).__name__}: {failure}" if kind == "error" else str(failure)


def raise_agreed(reports: list[Report]) -> None:
    """Raise the first failure among all processes' ``reports`` (nothing if none).

    Out of memory with retries left: ``torch.OutOfMemoryError``, so that
    :func:`apo.out_of_memory.retry_halving` retries on every process; out of memory with
    none left: :class:`~apo.out_of_memory.OutOfMemory`; anything else:
    :class:`AgreedFailure`.
    """
    failed = [(rank, report) for rank, report in enumerate(reports) if report is not None]
    if not failed:
        return
    rank, (kind, message) = failed[0]
    text = f"process {rank}: {message}"
    if len(failed) > 1:
        text += f" (and {len(failed) - 1} more process(es) failed)"
    if kind == "out-of-memory":
        raise torch.OutOfMemoryError(text)
    if kind == "out-of-memory-final":
        raise OutOfMemory(text)
    raise AgreedFailure(text)


def run_agreed(
    attempt: Callable[[], T], gather: Callable[[list[Report]], list[Report]], processes: int
) -> T:
    """``attempt()`` on every process; if it failed on any, the same error on all.

    ``gather`` collects one report per process (``accelerate.utils.gather_object``);
    every process must call this at the same point. With one process the error is
    raised as it is.
    """
    if processes == 1:
        return attempt()
    result: T | None = None
    failure: BaseException | None = None
    try:
        result = attempt()
    except Exception as error:  # reported to every process below
        failure = error
    raise_agreed(gather([report_of(failure)]))
    return result  # type: ignore[return-value]


def all_reduce_mean_gradients(
    parameters: Iterable[torch.nn.Parameter], reduce: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    """Average the gradients of trainable ``parameters`` over processes, as DDP does,
    in one flat tensor. A parameter with a gradient on some process only counts as
    zero on the others; one with a gradient on none keeps none (the optimizer then
    leaves it alone, as in one process)."""
    trainable = [p for p in parameters if p.requires_grad]
    if not trainable:
        return
    device = trainable[0].device
    has_grad = torch.tensor([float(p.grad is not None) for p in trainable], device=device)
    used = [p for p, flag in zip(trainable, reduce(has_grad).tolist(), strict=True) if flag > 0]
    if not used:
        return
    for parameter in used:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    flat = reduce(torch.cat([p.grad.reshape(-1) for p in used]))
    offset = 0
    for parameter in used:
        size = parameter.grad.numel()
        parameter.grad.copy_(flat[offset : offset + size].view_as(parameter.grad))
        offset += size
