"""The whole APO objective, composed from the pure pieces of this package.

Two steps, because a trainer does them at different times:

1. :func:`shape_advantages`, once per rollout over whole groups: rewards ->
   group advantages -> STCR (optional) -> DADS KL weights (optional).
2. :func:`apo_objective`, once per mini-batch: PPO clipped surrogate on the
   shaped advantages + beta * DADS-weighted KL to the reference.

:func:`apo_loss` does both in one call. With ``dads=False, stcr=False`` it is
plain GRPO; each flag alone gives GRPO+DADS or GRPO+STCR::

    total = policy_loss(A')  +  beta * agg_i( f(d_i) * KL_i )
    A'_i  = A_i * (1 + w_i)                    (STCR, else A'_i = A_i)
    f(d_i)  DADS weight of response i          (else 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from apo.algorithms.advantages import group_advantages
from apo.algorithms.config import AlgorithmConfig, resolve_config
from apo.algorithms.dads import dads_kl_weights
from apo.algorithms.difficulty import group_difficulty
from apo.algorithms.groups import as_correct_mask, check_same_shape, to_groups
from apo.algorithms.kl import kl_divergence
from apo.algorithms.policy_loss import aggregate_loss, masked_token_mean, ppo_clip_loss
from apo.algorithms.stcr import apply_stcr, stcr_weights


def _mean_where(values: Tensor, where: Tensor) -> Tensor:
    """Mean of ``values`` where ``where`` holds; NaN when it holds nowhere (undefined)."""
    if not bool(where.any()):
        return torch.tensor(float("nan"))
    return values[where].float().mean()


def shaping_metrics(
    rewards: Tensor,
    correct: Tensor,
    difficulty: Tensor,
    raw_advantages: Tensor,
    advantages: Tensor,
    kl_weights: Tensor,
    stcr_weights: Tensor,
    group_size: int,
    config: AlgorithmConfig | None = None,
    **settings: Any,
) -> dict[str, Tensor]:
    """Diagnostics of a rollout's shaping; every input is [N], grouped by prompt.

    A sample is *shaped* by DADS when its KL weight is below 1, and *penalised*
    by STCR when its weight is > 0 (and, with ``stcr_negatives_only``, its raw
    advantage < 0). Means over no sample are NaN. ``config`` and ``settings``: the
    shaping's settings, as :func:`shape_advantages` takes them.
    """
    config = resolve_config(config, settings)
    is_correct = as_correct_mask(correct)
    positive = advantages > 0
    shaped = kl_weights < 1
    penalised = stcr_weights > 0
    if config.stcr_negatives_only:
        penalised &= raw_advantages < 0
    grouped_rewards = to_groups(rewards, group_size, "rewards")
    grouped_correct = to_groups(is_correct, group_size, "correct")
    return {
        "adv/mean": advantages.mean(),
        "adv/abs_mean": advantages.abs().mean(),
        "adv/positive_frac": positive.float().mean(),
        "difficulty/mean": difficulty.float().mean(),
        "groups/all_correct_frac": grouped_correct.all(dim=1).float().mean(),
        "groups/all_wrong_frac": (~grouped_correct).all(dim=1).float().mean(),
        "groups/uniform_reward_frac": (grouped_rewards == grouped_rewards[:, :1])
        .all(dim=1)
        .float()
        .mean(),
        "dads/kl_weight_pos_mean": _mean_where(kl_weights, positive),
        "dads/shaped_frac": shaped.float().mean(),
        "stcr/weight_penalized_mean": _mean_where(stcr_weights, penalised),
        "stcr/penalized_frac": penalised.float().mean(),
    }


@dataclass(frozen=True)
class ShapedAdvantages:
    """Per-response quantities of one rollout, all [N] and detached.

    ``advantages`` are the ones to train on (after STCR when on); ``kl_weights``
    scale each response's KL term (DADS weights when on, else ones).
    """

    advantages: Tensor
    kl_weights: Tensor
    raw_advantages: Tensor
    difficulty: Tensor
    stcr_weights: Tensor
    metrics: dict[str, Tensor]


def shape_advantages(
    rewards: Tensor,
    correct: Tensor,
    lengths: Tensor,
    group_size: int,
    config: AlgorithmConfig | None = None,
    **settings: Any,
) -> ShapedAdvantages:
    """Advantages and KL weights of one rollout of whole groups.

    Args:
        rewards: [N] total reward per response, grouped by prompt (G each).
        correct: [N] bool (or 0/1): the accuracy part of the reward is 1.
        lengths: [N] number of generated tokens per response.
        group_size: G.
        config: the settings (official when None); the trainer passes its
            ``algorithm`` section. Read here: ``dads`` / ``stcr`` (each APO
            component on or off) and the fields of
            :data:`~apo.algorithms.config.SHAPING_FIELDS`.
        settings: fields of :class:`AlgorithmConfig` as keywords, over ``config``
            (``dads=False, stcr=False``; ``advantage_method`` names ``advantage``).

    Returns:
        :class:`ShapedAdvantages`, whose ``metrics`` hold ``adv/*``,
        ``difficulty/mean``, ``groups/*`` fractions, and ``dads/*`` and ``stcr/*``
        weights (NaN where a mean is over no sample, e.g. no positive sample).
    """
    config = resolve_config(config, settings)
    check_same_shape(rewards, "rewards", correct=correct, lengths=lengths)
    rewards, correct, lengths = rewards.detach(), correct.detach(), lengths.detach()
    is_correct = as_correct_mask(correct)
    raw = group_advantages(
        rewards, group_size, config.advantage, config.advantage_eps, unbiased=config.unbiased_std
    )
    difficulty = group_difficulty(is_correct, group_size)

    if config.stcr:
        weights = stcr_weights(lengths, is_correct, group_size, base=config.stcr_base)
        advantages = apply_stcr(raw, weights, negatives_only=config.stcr_negatives_only)
    else:
        weights = torch.zeros_like(raw)
        advantages = raw
    schedule = config.dads_schedule if config.dads else "constant"
    kl_weights = dads_kl_weights(advantages, difficulty, schedule)

    metrics = shaping_metrics(
        rewards,
        is_correct,
        difficulty,
        raw,
        advantages,
        kl_weights,
        weights,
        group_size,
        config,
    )
    return ShapedAdvantages(
        advantages=advantages,
        kl_weights=kl_weights,
        raw_advantages=raw,
        difficulty=difficulty,
        stcr_weights=weights,
        metrics=metrics,
    )


def apo_objective(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor | None,
    mask: Tensor,
    advantages: Tensor,
    kl_weights: Tensor | None = None,
    config: AlgorithmConfig | None = None,
    *,
    max_tokens: int | None = None,
    denominator: float | None = None,
    token_weights: Tensor | None = None,
    **settings: Any,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of one mini-batch: policy_loss + beta * agg(kl_weight_i * KL_it).

    The KL term is aggregated like the policy loss (official: per-response token
    mean, then batch mean). Gradients flow only through ``logp``.

    Args:
        logp, old_logp, ref_logp: [B, T] log-probs of the response tokens under
            the current, sampling and reference policies. ``ref_logp`` may be None
            when ``beta == 0`` (no reference model).
        mask: [B, T] bool or 0/1, set on response tokens.
        advantages: [B] shaped advantages (:func:`shape_advantages`).
        kl_weights: [B] per-response KL weights; None means ones.
        config: the settings (official when None). Read here: ``beta`` (KL
            coefficient, official 1e-3), ``kl_estimator`` and ``kl_clamp`` (for
            :func:`kl_divergence`), ``eps_low``, ``eps_high``, ``dual_clip`` and
            ``aggregation`` (for :func:`ppo_clip_loss`).
        max_tokens, denominator: see :func:`aggregate_loss`; used by both terms.
        token_weights: [B, T] factors of the policy loss per token (importance
            weights of a sampler/trainer mismatch); None: ones.
        settings: fields of :class:`AlgorithmConfig` as keywords, over ``config``.

    Returns:
        (loss, metrics) with ``loss/total``, ``loss/policy``, ``loss/kl`` (weighted,
        before beta), ``kl/mean`` (unweighted token mean) and the ``policy/*``
        diagnostics of :func:`ppo_clip_loss`.
    """
    config = resolve_config(config, settings)
    policy_loss, metrics = ppo_clip_loss(
        logp,
        old_logp,
        advantages,
        mask,
        eps_low=config.eps_low,
        eps_high=config.eps_high,
        dual_clip=config.dual_clip,
        aggregation=config.aggregation,
        max_tokens=max_tokens,
        denominator=denominator,
        token_weights=token_weights,
    )
    total = policy_loss
    if ref_logp is not None:
        keep = mask.bool()
        # Zero masked positions first: garbage there must not reach exp() or the gradient.
        kl = kl_divergence(
            torch.where(keep, logp, torch.zeros_like(logp)),
            torch.where(keep, ref_logp, torch.zeros_like(ref_logp)),
            config.kl_estimator,
            clamp=config.kl_clamp,
        )
        weighted = kl if kl_weights is None else kl * kl_weights.detach().to(kl.dtype)[:, None]
        kl_loss = aggregate_loss(
            weighted, keep, config.aggregation, max_tokens=max_tokens, denominator=denominator
        )
        total = policy_loss + config.beta * kl_loss
        metrics["loss/kl"] = kl_loss.detach()
        metrics["kl/mean"] = masked_token_mean(kl, keep)
    elif config.beta > 0:
        raise ValueError("ref_logp is required when beta > 0 (the KL term needs a reference)")
    metrics["loss/policy"] = policy_loss.detach()
    metrics["loss/total"] = total.detach()
    return total, metrics


def apo_loss(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor | None,
    mask: Tensor,
    rewards: Tensor,
    correct: Tensor,
    lengths: Tensor | None,
    group_size: int,
    config: AlgorithmConfig | None = None,
    *,
    max_tokens: int | None = None,
    **settings: Any,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The APO loss of a batch of whole groups in one call (official settings by default).

    ``dads=False, stcr=False`` is GRPO; ``dads=True, stcr=True`` is APO.

    Args:
        logp, old_logp, ref_logp, mask: [N, T] as in :func:`apo_objective`.
        rewards, correct: [N] as in :func:`shape_advantages`.
        lengths: [N] generated-token counts; None means ``mask.sum(-1)``.
        group_size: G; the N rows hold N / G whole groups, contiguously.
        config, settings: the settings of both steps (:class:`AlgorithmConfig`, or
            its fields as keywords over it).
        max_tokens: see :func:`aggregate_loss`.

    Returns:
        (loss, metrics): the metrics of both steps in one dict.
    """
    config = resolve_config(config, settings)
    if lengths is None:
        lengths = mask.sum(dim=-1)
    shaped = shape_advantages(rewards, correct, lengths, group_size, config)
    if logp.shape[0] != rewards.shape[0]:
        raise ValueError(f"logp has {logp.shape[0]} rows for {rewards.shape[0]} rewards")
    loss, metrics = apo_objective(
        logp,
        old_logp,
        ref_logp,
        mask,
        shaped.advantages,
        shaped.kl_weights,
        config,
        max_tokens=max_tokens,
    )
    return loss, shaped.metrics | metrics
