"""STCR: Suboptimal Trajectory Complexity Regularization (negatives only).

An incorrect response much longer than its group's correct ones is penalised
harder, to curb overthinking. Computing the weights and applying them are two
separate steps, so either can be reused on its own.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from apo.algorithms.config import OFFICIAL_STCR_BASE
from apo.algorithms.groups import as_correct_mask, check_same_shape, to_groups


def stcr_weights(
    lengths: Tensor,
    correct: Tensor,
    group_size: int,
    base: float = OFFICIAL_STCR_BASE,
) -> Tensor:
    """STCR weight w_i of every response.

    With L_i the number of generated tokens of response i and Lbar_pos the mean
    length of the correct responses of its group::

        diff_i = L_i - Lbar_pos
        w_i    = 1 - base^(-diff_i)   if i is incorrect and diff_i > 0
                 0                    otherwise (correct, not longer, or the
                                      group has no correct response)

    w_i is in [0, 1) and grows with the excess length. It is computed as
    -expm1(-diff_i * ln(base)), exact for the tiny exponents of the official
    base 1.00001 (in float32 it only rounds to 1 past diff_i * ln(base) ~ 17).

    Args:
        lengths: [N] generated-token counts (int or float), grouped by prompt.
        correct: [N] bool (or 0/1).
        group_size: G.
        base: > 1; larger values penalise excess length faster.

    Returns:
        [N] float32 weights.
    """
    if not base > 1.0:
        raise ValueError(f"STCR base must be > 1, got {base!r}")
    check_same_shape(lengths, "lengths", correct=correct)
    length = to_groups(lengths.to(torch.float32), group_size, "lengths")
    is_correct = to_groups(as_correct_mask(correct), group_size, "correct")
    if bool((length < 0).any()):
        raise ValueError("lengths must be non-negative token counts")

    num_correct = is_correct.sum(dim=1, keepdim=True)
    correct_length_sum = (length * is_correct).sum(dim=1, keepdim=True)
    mean_correct_length = correct_length_sum / num_correct.clamp(min=1)
    excess = length - mean_correct_length

    penalised = ~is_correct & (excess > 0) & (num_correct > 0)
    weight = -torch.expm1(-excess * math.log(base))
    return torch.where(penalised, weight, torch.zeros_like(weight)).reshape(-1)


def apply_stcr(advantages: Tensor, weights: Tensor, *, negatives_only: bool = False) -> Tensor:
    """A_i <- A_i * (1 + w_i).

    The official code scales every advantage, so an incorrect response whose
    format reward makes A_i > 0 gets a *larger* positive advantage for being
    long. ``negatives_only=True`` scales only A_i < 0, which is what STCR
    intends (a stronger push away from long wrong answers).

    Args:
        advantages: [N] float.
        weights: [N] from :func:`stcr_weights`.

    Returns:
        [N] shaped advantages, same dtype as ``advantages``.
    """
    check_same_shape(advantages, "advantages", weights=weights)
    weights = weights.to(advantages.dtype)
    if negatives_only:
        weights = torch.where(advantages < 0, weights, torch.zeros_like(weights))
    return advantages * (1.0 + weights)
