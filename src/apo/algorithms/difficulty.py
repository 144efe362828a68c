"""Prompt difficulty as measured by the group's own success rate."""

from __future__ import annotations

from torch import Tensor

from apo.algorithms.groups import as_correct_mask, to_groups


def group_difficulty(correct: Tensor, group_size: int) -> Tensor:
    """Per-sample difficulty d = 1 - (#correct in its group) / G, in [0, 1].

    d = 0: every response of the group was correct; d = 1: none was.

    Args:
        correct: [N] bool (or 0/1), N = num_prompts * G, grouped contiguously.
        group_size: G.

    Returns:
        [N] float32, every response carrying the difficulty of its group.
    """
    grouped = to_groups(as_correct_mask(correct), group_size, "correct")
    solve_rate = grouped.float().mean(dim=1, keepdim=True)
    return (1.0 - solve_rate).expand_as(grouped).reshape(-1)
