"""Group-relative advantage estimators (GRPO and friends).

Every estimator maps rewards laid out as [num_prompts, G] groups to one
advantage per response. New estimators are one decorated function::

    @ADVANTAGE_ESTIMATORS.register("my_estimator")
    def my_estimator(grouped_rewards: Tensor, *, eps: float, unbiased: bool) -> Tensor: ...
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from apo.algorithms.groups import as_float, to_groups
from apo.algorithms.names import GROUP_RELATIVE as GROUP_RELATIVE  # its former home
from apo.registry import Registry

AdvantageEstimator = Callable[..., Tensor]
ADVANTAGE_ESTIMATORS: Registry[AdvantageEstimator] = Registry("advantage estimator")


def centered(grouped: Tensor) -> Tensor:
    """r_i - mean_g(r), computed as offsets from the group's first reward, so a group
    of equal rewards is exactly 0.

    ``grouped - grouped.mean()`` rounds the mean: three float32 rewards of 7.9469
    gave residuals of one ulp (4.8e-7) and a std of exactly 0, so GRPO's
    division by std + eps turned a group that carries no signal into advantages
    of 477. The offsets of equal rewards are exact zeros, and so is their mean.
    """
    offsets = grouped - grouped[:, :1]
    return offsets - offsets.mean(dim=1, keepdim=True)


@ADVANTAGE_ESTIMATORS.register("grpo")
def _grpo(grouped: Tensor, *, eps: float, unbiased: bool) -> Tensor:
    """A_i = (r_i - mean_g(r)) / (std_g(r) + eps); std unbiased (n - 1) by default."""
    if grouped.shape[1] == 1:
        # The unbiased std of one value is undefined (torch returns NaN); a lone
        # response has nothing to be compared with, so it carries no signal.
        return torch.zeros_like(grouped)
    deviations = centered(grouped)
    # the std of the deviations: the rewards' std (shift-invariant), 0 for equal rewards
    std = deviations.std(dim=1, keepdim=True, correction=1 if unbiased else 0)
    return deviations / (std + eps)


@ADVANTAGE_ESTIMATORS.register("dr_grpo")
def _dr_grpo(grouped: Tensor, *, eps: float, unbiased: bool) -> Tensor:
    """A_i = r_i - mean_g(r) (Dr.GRPO: no division by the std)."""
    return centered(grouped)


@ADVANTAGE_ESTIMATORS.register("rloo")
def _rloo(grouped: Tensor, *, eps: float, unbiased: bool) -> Tensor:
    """A_i = r_i - mean_{j != i} r_j = G / (G - 1) * (r_i - mean_g(r)) (leave-one-out)."""
    size = grouped.shape[1]
    if size == 1:
        return torch.zeros_like(grouped)  # no other response to serve as the baseline
    return centered(grouped) * (size / (size - 1))


def group_advantages(
    rewards: Tensor,
    group_size: int,
    method: str = "grpo",
    eps: float = 1e-9,
    *,
    unbiased: bool = True,
) -> Tensor:
    """Group-relative advantages, one per response.

    Methods (G = group_size, statistics over the response's own group):

    - ``grpo``:    A_i = (r_i - mean(r)) / (std(r) + eps), std unbiased (divides by
      G - 1, the torch default used by the official code) unless ``unbiased=False``.
    - ``dr_grpo``: A_i = r_i - mean(r).
    - ``rloo``:    A_i = r_i - (sum(r) - r_i) / (G - 1).

    A group of one response (G = 1) gets advantage 0 under every method.

    Args:
        rewards: [N] float, N = num_prompts * G, grouped contiguously.
        group_size: G.
        method: a name registered in ``ADVANTAGE_ESTIMATORS``.
        eps: added to the std (``grpo`` only).
        unbiased: std with Bessel's correction (``grpo`` only).

    Returns:
        [N] advantages, float32 (float64 for float64 input).
    """
    estimator = ADVANTAGE_ESTIMATORS.get(method)
    grouped = to_groups(as_float(rewards), group_size, "rewards")
    return estimator(grouped, eps=eps, unbiased=unbiased).reshape(-1)
