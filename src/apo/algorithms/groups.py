"""Group layout helpers shared by the algorithm functions.

Responses are laid out group by group: the G responses of prompt k occupy
indices [k*G, (k+1)*G) of every per-sample tensor. Reshaping to
[num_prompts, G] lets every group statistic be one vectorised reduction.
"""

from __future__ import annotations

import torch
from torch import Tensor


def as_float(x: Tensor) -> Tensor:
    """``x`` as float32, or float64 if it already is; half precision is upcast.

    Group statistics and log-ratios are computed in at least float32: bf16 has
    8 bits of mantissa, too few for exp(logp - logp_old) near 1.
    """
    if x.dtype == torch.float64:
        return x
    return x.to(torch.float32)


def check_group_size(group_size: int) -> None:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")


def to_groups(x: Tensor, group_size: int, name: str) -> Tensor:
    """Reshape a per-sample tensor [N] to [N // G, G], with clear errors.

    Raises ValueError when ``x`` is not 1-D, is empty, or N is not a multiple of G.
    """
    check_group_size(group_size)
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D [num_samples], got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: an empty batch has no groups to score")
    if x.numel() % group_size != 0:
        raise ValueError(
            f"{name} has {x.numel()} samples, not a multiple of group_size={group_size}; "
            "responses must be laid out as whole groups of G"
        )
    return x.reshape(-1, group_size)


def check_same_shape(reference: Tensor, reference_name: str, **others: Tensor) -> None:
    for name, tensor in others.items():
        if tensor.shape != reference.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)} but {reference_name} has "
                f"shape {tuple(reference.shape)}; they must match"
            )


def as_correct_mask(correct: Tensor, name: str = "correct") -> Tensor:
    """A boolean view of a correctness tensor given as bool or as 0/1 numbers."""
    if correct.dtype == torch.bool:
        return correct
    if not bool(((correct == 0) | (correct == 1)).all()):
        raise ValueError(f"{name} must be boolean or hold only 0 and 1")
    return correct != 0


def varied_groups(rewards: Tensor, group_size: int) -> Tensor:
    """[N] bool: responses of groups whose rewards are not all equal (a group of equal
    rewards has zero advantages, hence no policy gradient; DAPO drops such groups)."""
    grouped = to_groups(rewards, group_size, "rewards")
    varied = (grouped != grouped[:, :1]).any(dim=1, keepdim=True)
    return varied.expand_as(grouped).reshape(-1)


def trained_responses(
    rewards: Tensor,
    truncated: Tensor,
    group_size: int,
    *,
    varied_only: bool,
    overlong_filter: bool,
) -> Tensor:
    """[N] bool: the responses the update trains on (the others keep their place in
    the batch with an empty loss mask).

    ``varied_only``: only groups whose rewards are not all equal (DAPO's dynamic
    sampling, ``filter_uniform_groups``); ``overlong_filter``: no truncated response
    (DAPO's overlong filtering). Advantages, DADS and STCR are computed over every
    response of a group either way.
    """
    check_same_shape(rewards, "rewards", truncated=truncated)
    keep = torch.ones_like(rewards, dtype=torch.bool)
    if varied_only:
        keep = varied_groups(rewards, group_size)
    if overlong_filter:
        keep = keep & ~truncated.bool()
    return keep
