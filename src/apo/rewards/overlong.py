"""DAPO's soft overlong punishment: a reward term for responses that run into the
length limit (Yu et al., 2025, "DAPO", section 3.4, eq. 13).

It is computed in the trainer from token counts (a reward function in the worker
pool sees only text), and enters the total reward as the component ``overlong``.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor

from apo.rewards.runner import RewardResult

COMPONENT = "overlong"


def overlong_penalty(lengths: Tensor, max_length: int, buffer: int, penalty: float = 1.0) -> Tensor:
    """The soft overlong punishment of each response, ``penalty`` times::

        R(y) =  0                                  |y| <= L_max - L_cache
                ((L_max - L_cache) - |y|) / L_cache   L_max - L_cache < |y| <= L_max
               -1                                  |y| > L_max

    with |y| the response's generated tokens, L_max = ``max_length`` (the
    rollout's max_new_tokens) and L_cache = ``buffer``: nothing below the
    buffer, then a linear fall to -penalty at the limit (a truncated response).

    Args:
        lengths: [N] generated-token counts.
        max_length: L_max > 0.
        buffer: L_cache, in 1..L_max.
        penalty: the punishment at the limit, >= 0.

    Returns:
        [N] float32 values in [-penalty, 0].
    """
    if not 0 < buffer <= max_length:
        raise ValueError(f"the overlong buffer must be in 1..{max_length}, got {buffer}")
    if penalty < 0:
        raise ValueError(f"the overlong penalty must be >= 0, got {penalty}")
    lengths = lengths.to(torch.float32)
    start = max_length - buffer
    inside = (start - lengths) / buffer
    values = torch.where(lengths <= start, torch.zeros_like(lengths), inside.clamp(min=-1.0))
    return penalty * values


def with_overlong_penalty(scored: RewardResult, values: Tensor) -> RewardResult:
    """``scored`` with the penalty ``values`` added to the total and as the component
    ``overlong``; correctness (for DADS and STCR) is not changed."""
    return RewardResult(
        total=scored.total + values,
        components=scored.components | {COMPONENT: values},
        correct=scored.correct,
        failures=scored.failures | {COMPONENT: Counter()},  # computed here: it cannot fail
    )
