"""Graceful stopping: SIGTERM / SIGINT finish the step, save a checkpoint and exit.

The first signal is noted; the loop asks :meth:`GracefulStop.requested` after
each step (every process, so all stop at the same step, whichever got the
signal). A second signal stops at once, without a checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopTraining(SystemExit):
    """Raised in answer to SIGTERM / SIGINT: after saving a checkpoint, or at once on a
    second signal (``saved`` False; the previous checkpoint is the last one)."""

    def __init__(self, code: int, saved: bool = True) -> None:
        super().__init__(code)
        self.saved = saved


class GracefulStop:
    """The signal a run received, if any (``announce``: log the first one)."""

    def __init__(self, announce: bool = True) -> None:
        self.signal: int | None = None
        self.announce = announce

    @contextlib.contextmanager
    def handling_signals(self, close: Callable[[], None]) -> Iterator[None]:
        """SIGTERM / SIGINT answered by :meth:`on_signal` in the block; then ``close()``
        with both ignored (a second Ctrl-C right after a quick stop must not break
        the reward pool's shutdown with a traceback), and the caller's handlers back."""
        previous = {sig: signal.signal(sig, self.on_signal) for sig in SIGNAL_EXIT_CODES}
        try:
            yield
        finally:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            try:
                close()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def on_signal(self, signum: int, frame: object) -> None:
        if self.signal is not None:  # a second signal: stop now, no checkpoint
            raise StopTraining(SIGNAL_EXIT_CODES[signum], saved=False)
        self.signal = signum
        if self.announce:
            logger.warning("signal %d: finishing this step, then saving a checkpoint", signum)

    def requested(self, reduce_max: Callable[[Tensor], Tensor]) -> bool:
        """Whether any process got a signal (``reduce_max``: the max over processes)."""
        flag = float(reduce_max(torch.tensor(float(self.signal or 0))))
        if flag and self.signal is None:
            self.signal = int(flag)
        return bool(flag)

    def stop(self) -> StopTraining:
        """The exit for the signal received, after the checkpoint is saved."""
        return StopTraining(SIGNAL_EXIT_CODES[self.signal])
