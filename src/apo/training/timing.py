"""How long each phase of a step took, under the names the metrics log."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class PhaseTimer:
    """Seconds per phase, added up when a phase runs several times in a step
    (generation and scoring, once per round of dynamic sampling)::

        timer = PhaseTimer()
        with timer.phase("time/generation"):
            ...
        timer.times  # {"time/generation": 1.2}, in the order phases first ended
    """

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start
