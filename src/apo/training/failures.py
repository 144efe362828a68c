"""Why a run stops on its own: the exceptions, and the reward failure streak.

Each is raised on every process alike, after which the trainer saves the last
good state as a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class TrainingFailure(RuntimeError):
    """The run cannot go on; the last good state was saved as a checkpoint."""


class NonFiniteTraining(TrainingFailure):
    """Too many updates in a row had a NaN/inf gradient; the last good state was saved."""


class RewardFailure(TrainingFailure):
    """A reward component failed on every response for too many steps in a row."""


class RewardFailureStreak:
    """Counts the steps in a row in which a reward component failed on every response
    (over all processes); at ``limit`` the run stops before it trains on garbage."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.steps: dict[str, int] = {}

    def check(
        self,
        failures: dict[str, dict[str, int]],
        responses: int,
        reduce_sum: Callable[[Tensor], Tensor],
    ) -> None:
        """``failures``: this process's failure counts per component and kind;
        ``responses``: how many it scored; ``reduce_sum`` sums over processes."""
        names = list(failures)
        local = torch.tensor([float(sum(failures[n].values())) for n in names] + [float(responses)])
        totals = reduce_sum(local).tolist()
        for name, failed in zip(names, totals[:-1], strict=True):
            all_failed = failed >= totals[-1]
            self.steps[name] = self.steps.get(name, 0) + 1 if all_failed else 0
            if self.steps[name] >= self.limit:
                raise RewardFailure(
                    f"reward {name!r} failed on every response for {self.limit} steps in a "
                    "row (its first error is in the warnings above); fix it or remove it "
                    "from rewards.components"
                )
