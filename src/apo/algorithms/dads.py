"""DADS: Difficulty-Adaptive Divergence Shaping (positives only).

The KL-to-reference weight of each positive sample depends on how hard its
prompt was for the group: on a hard prompt a rare success may pull the policy
further from the reference. A schedule maps difficulty d in (0, 1) to a weight
in (0, 1]; a new schedule is one decorated function::

    @DADS_SCHEDULES.register("linear")
    def linear(difficulty: Tensor) -> Tensor:
        return 1.0 - 0.5 * difficulty
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from apo.algorithms.groups import as_float, check_same_shape
from apo.registry import Registry

DadsSchedule = Callable[[Tensor], Tensor]
DADS_SCHEDULES: Registry[DadsSchedule] = Registry("DADS schedule")


@DADS_SCHEDULES.register("saturating")
def saturating_schedule(difficulty: Tensor) -> Tensor:
    """f(d) = 1 - exp(-e * (1 - d)), the official schedule: near its ceiling
    1 - e^-e ~ 0.934 on easy prompts (d -> 0), falling to 0 as d -> 1."""
    return -torch.expm1(-math.e * (1.0 - difficulty))


@DADS_SCHEDULES.register("exp_decay")
def exp_decay_schedule(difficulty: Tensor) -> Tensor:
    """f(d) = exp(-e * d), the alternative kept commented out in the official code."""
    return torch.exp(-math.e * difficulty)


@DADS_SCHEDULES.register("constant")
def constant_schedule(difficulty: Tensor) -> Tensor:
    """f(d) = 1: every sample keeps the full KL weight (plain GRPO)."""
    return torch.ones_like(difficulty)


# The first names, still accepted (configs written before the rename).
DADS_SCHEDULES.alias("official", "saturating")
DADS_SCHEDULES.alias("exp", "exp_decay")


def dads_kl_weights(advantages: Tensor, difficulty: Tensor, schedule: str = "saturating") -> Tensor:
    """Per-sample KL weight::

        w_i = f(d_i)   if A_i > 0 and 0 < d_i < 1
              1        otherwise (A_i <= 0, or the group was all right or all wrong)

    Args:
        advantages: [N] float (after any STCR shaping; only its sign is used).
        difficulty: [N] in [0, 1], from :func:`apo.algorithms.group_difficulty`.
        schedule: a name registered in ``DADS_SCHEDULES`` (or a former name).

    Returns:
        [N] weights in (0, 1], float32 (float64 for float64 difficulty).
    """
    shape_fn = DADS_SCHEDULES.get(schedule)
    check_same_shape(advantages, "advantages", difficulty=difficulty)
    if advantages.numel() == 0:
        raise ValueError("advantages is empty: an empty batch has no samples to weight")
    d = as_float(difficulty)
    shaped = (advantages > 0) & (d > 0) & (d < 1)
    return torch.where(shaped, shape_fn(d), torch.ones_like(d))
