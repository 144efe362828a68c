"""The PPO clipped surrogate and the ways to reduce a [B, T] token loss to a scalar."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from apo.algorithms.groups import as_float, check_same_shape
from apo.registry import Registry

Aggregation = Callable[[Tensor, Tensor, "int | None", "float | None"], Tensor]
LOSS_AGGREGATIONS: Registry[Aggregation] = Registry("loss aggregation")

# Bound on |log pi - log pi_old| before exponentiating, as in verl: exp(20) ~ 5e8
# is already far outside any clip range, and larger values overflow in float32.
MAX_LOG_RATIO = 20.0


def _mean_over_nonempty_rows(per_row: Tensor, mask: Tensor, denominator: float | None) -> Tensor:
    """Mean of a per-sequence value over the rows that hold at least one token.

    A fully masked row is not a sample (padding of an uneven batch, say), so it
    is left out instead of turning 0 / 0 into NaN. With no token at all the
    result is 0, still attached to the graph.
    """
    nonempty = mask.any(dim=1)
    count = nonempty.sum() if denominator is None else denominator
    if count == 0:
        return per_row.sum() * 0.0
    return torch.where(nonempty, per_row, torch.zeros_like(per_row)).sum() / count


@LOSS_AGGREGATIONS.register("seq-mean-token-mean")
def seq_mean_token_mean(
    loss: Tensor, mask: Tensor, max_tokens: int | None = None, denominator: float | None = None
) -> Tensor:
    """mean_i [ sum_t m_it l_it / sum_t m_it ]: each response weighs the same (official)."""
    token_count = mask.sum(dim=1)
    per_row = (loss * mask).sum(dim=1) / token_count.clamp(min=1)
    return _mean_over_nonempty_rows(per_row, mask, denominator)


@LOSS_AGGREGATIONS.register("token-mean")
def token_mean(
    loss: Tensor, mask: Tensor, max_tokens: int | None = None, denominator: float | None = None
) -> Tensor:
    """sum_it m_it l_it / sum_it m_it: each token weighs the same (DAPO)."""
    count = mask.sum().clamp(min=1) if denominator is None else max(denominator, 1)
    return (loss * mask).sum() / count


@LOSS_AGGREGATIONS.register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(
    loss: Tensor, mask: Tensor, max_tokens: int | None = None, denominator: float | None = None
) -> Tensor:
    """mean_i [ sum_t m_it l_it / C ] with a constant C (Dr.GRPO: no length bias).

    C is ``max_tokens`` (the maximum response length of the run); by default the
    padded width T of this batch.
    """
    norm = loss.shape[1] if max_tokens is None else max_tokens
    if norm <= 0:
        raise ValueError(f"max_tokens must be positive, got {norm!r}")
    per_row = (loss * mask).sum(dim=1) / norm
    return _mean_over_nonempty_rows(per_row, mask, denominator)


def aggregate_loss(
    loss: Tensor,
    mask: Tensor,
    mode: str = "seq-mean-token-mean",
    *,
    max_tokens: int | None = None,
    denominator: float | None = None,
) -> Tensor:
    """Reduce a per-token loss [B, T] to a scalar over the tokens where ``mask`` is set.

    Modes: ``seq-mean-token-mean`` (official), ``token-mean``,
    ``seq-mean-token-sum-norm`` (Dr.GRPO). Rows with no token are ignored.
    Values at masked positions never reach the result, even if NaN or inf.

    ``denominator`` replaces the count the mean divides by (responses with at
    least one token; tokens for ``token-mean``). A trainer that sees one
    micro-batch of a larger batch passes the count of the whole batch (all
    micro-batches, all processes), so the summed gradients equal those of the
    whole batch at once.
    """
    aggregate = LOSS_AGGREGATIONS.get(mode)
    if loss.dim() != 2:
        raise ValueError(f"loss must be [batch, tokens], got shape {tuple(loss.shape)}")
    check_same_shape(loss, "loss", mask=mask)
    if loss.numel() == 0:
        raise ValueError("loss is empty: an empty batch has no tokens to aggregate")
    keep = mask.bool()
    loss = torch.where(keep, loss, torch.zeros_like(loss))
    return aggregate(loss, keep.to(loss.dtype), max_tokens, denominator)


def masked_token_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Detached mean of ``values`` over the masked tokens (for diagnostics); 0 if none."""
    keep = mask.bool()
    values = values.detach()
    return torch.where(keep, values, torch.zeros_like(values)).sum() / keep.sum().clamp(min=1)


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    dual_clip: float | None = None,
    aggregation: str = "seq-mean-token-mean",
    max_tokens: int | None = None,
    denominator: float | None = None,
    token_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate, per token, then aggregated.

    With r_t = exp(logp_t - old_logp_t) and A the advantage::

        l_t = -min(r_t A, clip(r_t, 1 - eps_low, 1 + eps_high) A)
        dual clip (c > 1, A < 0 only):  l_t <- min(l_t, -c A)

    ``eps_high`` defaults to ``eps_low`` (symmetric PPO); a larger one is
    "clip-higher" (DAPO). Dual clip bounds the loss of a token whose ratio
    exploded on a negative sample (Ye et al. 2020).

    Args:
        logp: [B, T] log-probs of the response tokens under the current policy.
        old_logp: [B, T] the same under the policy that sampled them (detached).
        advantages: [B] per response, or [B, T] per token (detached).
        mask: [B, T] bool or 0/1, set on response tokens.
        aggregation, max_tokens, denominator: see :func:`aggregate_loss`.
        token_weights: [B, T] detached factors of each token's loss ``l_t``, e.g.
            importance weights for a sampler/trainer mismatch
            (:func:`~apo.algorithms.importance.importance_weights`); None: ones.

    Returns:
        (loss, metrics): the scalar loss and detached diagnostics
        ``policy/clip_frac`` (tokens where clipping took effect),
        ``policy/clip_frac_low``, ``policy/clip_frac_high``, ``policy/dual_clip_frac``,
        ``policy/approx_kl`` (k3 of pi_old vs pi), ``policy/ratio_mean``,
        ``policy/ratio_max``.
    """
    eps_high = eps_low if eps_high is None else eps_high
    if not (0 <= eps_low < 1) or eps_high < 0:
        raise ValueError(f"need 0 <= eps_low < 1 and eps_high >= 0, got {eps_low}, {eps_high}")
    if dual_clip is not None and dual_clip <= 1:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip!r}")
    if logp.dim() != 2:
        raise ValueError(f"logp must be [batch, tokens], got shape {tuple(logp.shape)}")
    check_same_shape(logp, "logp", old_logp=old_logp, mask=mask)
    if advantages.dim() == 1:
        if advantages.shape[0] != logp.shape[0]:
            raise ValueError(
                f"advantages has {advantages.shape[0]} entries for {logp.shape[0]} sequences"
            )
        advantages = advantages[:, None]
    else:
        check_same_shape(logp, "logp", advantages=advantages)

    keep = mask.bool()
    # Zero the log-ratio at masked positions *before* exp: garbage there (padding)
    # would otherwise turn into inf/NaN whose gradient poisons the real tokens.
    log_ratio = as_float(logp) - as_float(old_logp.detach())
    log_ratio = torch.where(keep, log_ratio, torch.zeros_like(log_ratio))
    log_ratio = log_ratio.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    adv = as_float(advantages.detach())

    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    token_loss = torch.maximum(unclipped, clipped)
    metrics = {}
    if dual_clip is not None:
        dual_bound = -adv * dual_clip
        dual_active = (adv < 0) & (token_loss > dual_bound)
        token_loss = torch.where(dual_active, dual_bound, token_loss)
        metrics["policy/dual_clip_frac"] = masked_token_mean(dual_active.float(), keep)
    if token_weights is not None:
        check_same_shape(logp, "logp", token_weights=token_weights)
        token_loss = token_loss * as_float(token_weights.detach())

    loss = aggregate_loss(
        token_loss, keep, aggregation, max_tokens=max_tokens, denominator=denominator
    )

    with torch.no_grad():
        clip_active = clipped > unclipped
        metrics |= {
            "policy/clip_frac": masked_token_mean(clip_active.float(), keep),
            "policy/clip_frac_low": masked_token_mean((clip_active & (adv < 0)).float(), keep),
            "policy/clip_frac_high": masked_token_mean((clip_active & (adv > 0)).float(), keep),
            "policy/approx_kl": masked_token_mean(torch.expm1(log_ratio) - log_ratio, keep),
            "policy/ratio_mean": masked_token_mean(ratio, keep),
            "policy/ratio_max": torch.where(keep, ratio, torch.zeros_like(ratio)).max(),
        }
    return loss, metrics
