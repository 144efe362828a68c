"""Out-of-memory errors: recognised, memory released, and reported with the fix.

A CUDA allocation failure raises ``torch.OutOfMemoryError``; the CPU allocator
raises a plain ``RuntimeError`` saying it "can't allocate memory". Both are
handled the same way, by :func:`retry_halving` (used by the rollout engine, the
log-prob passes and the update): the batch is halved and retried where that is
exact and cheap, otherwise the run stops with :class:`OutOfMemory`, whose
message names the settings to lower.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


class OutOfMemory(RuntimeError):
    """Memory ran out even at the smallest batch the retry could try."""


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def release_memory() -> None:
    """Give the failed attempt's tensors back (call outside the ``except`` block,
    whose traceback still holds them)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def retry_halving(
    attempt: Callable[[int], T],
    size: int,
    *,
    on_halve: Callable[[int, int], None],
    advice: Callable[[int], str],
    retry: bool = True,
) -> tuple[T, int]:
    """``attempt(size)``; after an out-of-memory error, ``attempt`` again with half
    the size (rounded up) until it fits.

    Returns the result and the size that fitted. ``attempt`` cuts its batches to
    the size it is given; ``on_halve(old, new)`` runs before each retry (the
    caller warns, naming the setting to lower, and keeps the size). At size 1,
    or when ``retry`` is False (processes that must stay in step), raises
    :class:`OutOfMemory` with ``advice(size)``.
    """
    while True:
        try:
            return attempt(size), size
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            # "process N: ...": another process ran out (apo.agreement); say which
            where = str(error).split(":", 1)[0] if str(error).startswith("process ") else ""
        release_memory()  # here, once the traceback holding the tensors is gone
        if size <= 1 or not retry:
            raise OutOfMemory(f"{where}: {advice(size)}" if where else advice(size))
        smaller = (size + 1) // 2
        on_halve(size, smaller)
        size = smaller
