"""Score responses with several reward functions, in parallel, with a hard timeout.

Every (response, reward) pair runs as one task in a pool of worker processes.
A task that runs past ``timeout_seconds`` has its worker killed and replaced
(a user's reward may hang; the accuracy reward bounds its own work, see
:mod:`apo.rewards.bounds`, and math_verify's signal-based timeout silently does
nothing in threads). A timeout, an exception, or a value that is
not a finite number scores 0 for that component, is counted, and never stops
training.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from apo.rewards.accuracy import GroundTruthError, accuracy_reward, warm_up
from apo.rewards.config import RewardComponentConfig as RewardComponentConfig  # its former home
from apo.rewards.config import RewardConfig
from apo.rewards.pool import start_worker_pool
from apo.rewards.registry import resolve_reward, reward_name

logger = logging.getLogger(__name__)

FAILURE_KINDS = ("timeouts", "errors", "invalid", "bad_ground_truth")


@dataclass
class RewardSample:
    """A response to score, with its row's ground truth and other fields."""

    response: str
    answer: str
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, example: Any, response: str) -> RewardSample:
        """A response to a data row (an :class:`apo.data.Example`): the reward
        functions get the row's ``question``, ``choices``, ``id`` and extra fields."""
        info = {"question": example.question, "choices": example.choices, "id": example.id}
        return cls(response=response, answer=example.answer, info=info | example.extra)


class InvalidRewardValue(TypeError):
    """A reward function returned something other than a finite number."""


@dataclass
class RewardResult:
    """Scores of a batch: the weighted ``total``, each component's raw value, and
    ``correct`` (the correctness component equals 1). All tensors are [N]."""

    total: Tensor
    components: dict[str, Tensor]
    correct: Tensor
    failures: dict[str, Counter]


_WORKER_CACHE: dict[str, Any] = {}


def _score(reference: str, response: str, answer: str, info: dict[str, Any]) -> float:
    """Runs in a worker process: one reward of one response."""
    function = _WORKER_CACHE.get(reference)
    if function is None:
        function = _WORKER_CACHE[reference] = resolve_reward(reference)
    value = function(response, answer, **info)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRewardValue(f"returned {type(value).__name__}, not a float")
    if not math.isfinite(value):
        raise InvalidRewardValue(f"returned {value}")
    return float(value)


def _preload(references: list[str]) -> None:
    """Worker start-up: import every reward once, outside any task's time limit.

    With the accuracy reward, math_verify and sympy are loaded too: that takes
    seconds, which the first answer needing them would otherwise spend inside
    its time limit (a worker started after a timeout would time out again).
    """
    for reference in references:
        _WORKER_CACHE[reference] = resolve_reward(reference)
    if accuracy_reward in _WORKER_CACHE.values():
        warm_up()


class RewardRunner:
    """Scores batches of responses; use as a context manager or call :meth:`close`.

    Every reward reference is imported when the runner is built, so a bad
    ``file.py:function`` fails before any expensive work.
    """

    def __init__(self, config: RewardConfig) -> None:
        self.config = config
        self.references = self.check_references(config)
        self.names = [reward_name(r) for r in self.references]
        self.weights = [c.weight for c in config.components]
        self._pool = None
        self._warned: set[tuple[str, str]] = set()

    @staticmethod
    def check_references(config: RewardConfig) -> list[str]:
        """Import every reward now; ValueError naming the one that fails."""
        references = [c.name for c in config.components]
        for reference in references:
            resolve_reward(reference)
        return references

    def _get_pool(self):
        if self._pool is None:
            self._pool = start_worker_pool(self.config.num_workers, _preload, (self.references,))
        return self._pool

    def score(self, samples: Sequence[RewardSample]) -> RewardResult:
        pool = self._get_pool()
        futures = [
            [
                pool.schedule(
                    _score,
                    args=(ref, s.response, s.answer, s.info),
                    timeout=self.config.timeout_seconds,
                )
                for s in samples
            ]
            for ref in self.references
        ]
        components: dict[str, Tensor] = {}
        failures: dict[str, Counter] = {}
        for name, component_futures in zip(self.names, futures, strict=True):
            values, counts = [], Counter()
            for sample, future in zip(samples, component_futures, strict=True):
                values.append(self._value(name, sample, future, counts))
            components[name] = torch.tensor(values, dtype=torch.float32)
            failures[name] = counts
        total = sum(w * components[n] for n, w in zip(self.names, self.weights, strict=True))
        correct = components[reward_name(self.config.correctness)] == 1.0
        return RewardResult(total=total, components=components, correct=correct, failures=failures)

    def _value(self, name: str, sample: RewardSample, future, counts: Counter) -> float:
        try:
            return future.result()
        except BrokenProcessPool as error:
            # Not a reward failure: no worker can run at all. Scoring everything 0
            # would silently train on garbage, so stop.
            raise RuntimeError(f"the reward worker pool could not run: {error}") from error
        except FutureTimeout:
            kind, detail = "timeouts", f"took over {self.config.timeout_seconds}s"
        except GroundTruthError as error:
            kind, detail = "bad_ground_truth", str(error)
        except InvalidRewardValue as error:
            kind, detail = "invalid", str(error)
        except Exception as error:  # the user's code may raise anything; the run goes on
            kind, detail = "errors", repr(error)
        counts[kind] += 1
        if (name, kind) not in self._warned:  # once per component and kind, not per sample
            self._warned.add((name, kind))
            where = sample.info.get("id", "?")
            logger.warning(
                "reward %r scored 0 for row id %s: %s (further cases are only counted)",
                name,
                where,
                detail,
            )
        return 0.0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> RewardRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
