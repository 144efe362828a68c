"""Worker process pools (rewards, benchmark judges) that a signal to the
trainer's process group does not take down.

A terminal's Ctrl-C, ``timeout``, ``kill -- -PGID`` and container runtimes signal
every process of the group. The trainer answers SIGINT/SIGTERM by finishing its
step and saving a checkpoint, which needs the workers: they leave the group when
they start (``os.setpgrp``), and the forkserver they are forked from starts with
SIGINT and SIGTERM ignored (a disposition that survives fork and exec). The pool
itself still stops them: pebble terminates each worker by its process id.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from pebble import ProcessPool

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def worker_context():
    # Not fork: the trainer process holds threads (torch, tokenizers) and maybe CUDA.
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Workers fork from a server that has imported math_verify and sympy once, so
    # one replacing a killed worker starts at once instead of importing them again
    # (seconds on a loaded machine). Takes effect when the server starts.
    context.set_forkserver_preload(["__main__", "math_verify"])
    return context


def start_worker_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()
) -> ProcessPool:
    """A pebble pool of ``workers`` processes outside the caller's process group;
    ``initializer(*initargs)`` runs in each when it starts."""
    context = worker_context()
    if context.get_start_method() == "forkserver":
        with _stop_signals_ignored():
            multiprocessing.forkserver.ensure_running()
    return ProcessPool(
        max_workers=workers,
        context=context,
        initializer=_start_worker,
        initargs=(initializer, initargs),
    )


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple) -> None:
    os.setpgrp()  # out of the trainer's group: a signal to the group is the trainer's
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored while a child process starts (it keeps the
    disposition). A signal in these milliseconds is lost; outside the main thread
    (where handlers cannot change) nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
