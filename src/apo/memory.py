"""Out-of-memory errors: recognised, memory released, and reported with the fix.

A CUDA allocation failure raises ``torch.OutOfMemoryError``; the CPU allocator
raises a plain ``RuntimeError`` saying it "can't allocate memory". Both are
handled the same way: the batch is split and retried where that is exact and
cheap, otherwise the run stops with :class:`OutOfMemory`, whose message names
the settings to lower.
"""

from __future__ import annotations

import gc

import torch


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
