"""Sampler/trainer mismatch: importance weights for responses sampled by an engine
whose log-probs differ from the trainer's (another precision, another kernel, an
inference server).

With ``delta_t = log pi_trainer(y_t) - log pi_sampler(y_t)`` on the response tokens
(the trainer's log-probs of the policy that sampled, i.e. ``old_logp``) and
``rho_t = exp(delta_t)``:

- ``truncate`` (truncated importance sampling, Yao et al. 2025, "Your efficient RL
  framework secretly brings you off-policy RL training"): the policy loss of token
  t is multiplied by ``min(rho_t, C)``;
- ``mask`` (sequence-level rejection): response i is left out of the policy loss
  when its geometric-mean ratio ``exp(mean_t delta_t)`` is outside ``[1/C, C]``;
- ``monitor``: no correction, the metrics only.

Metrics: ``importance/logp_abs_diff`` (mean |delta_t|), ``importance/kl`` (the k3
estimate of KL(sampler || trainer), mean of ``rho_t - 1 - delta_t``) and
``importance/over_cap_frac`` (tokens with ``rho_t`` outside ``[1/C, C]``), over
the masked tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from apo.algorithms.groups import as_float, check_same_shape
from apo.algorithms.names import IMPORTANCE_MODES
from apo.algorithms.policy_loss import MAX_LOG_RATIO, masked_token_mean


def importance_weights(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, mode: str, cap: float
) -> tuple[Tensor | None, dict[str, Tensor]]:
    """Per-token weights of the policy loss (None for ``monitor``) and the mismatch
    metrics; see the module docstring for the formulas.

    Args:
        trainer_logp: [B, T] the trainer's log-probs of the sampled tokens (detached).
        sampler_logp: [B, T] the engine's, for the same tokens.
        mask: [B, T] bool or 0/1, set on response tokens.
        mode: monitor, truncate or mask.
        cap: C > 1.

    Returns:
        ([B, T] detached float weights, or None) and the ``importance/*`` metrics.
    """
    if mode not in IMPORTANCE_MODES[1:]:
        raise ValueError(f"importance mode must be one of {IMPORTANCE_MODES[1:]}, got {mode!r}")
    if not cap > 1:
        raise ValueError(f"the importance cap must be > 1, got {cap!r}")
    check_same_shape(trainer_logp, "trainer_logp", sampler_logp=sampler_logp, mask=mask)
    keep = mask.bool()
    delta = as_float(trainer_logp.detach()) - as_float(sampler_logp.detach())
    delta = torch.where(keep, delta, torch.zeros_like(delta)).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    ratio = torch.exp(delta)
    log_cap = math.log(cap)
    metrics = {
        "importance/logp_abs_diff": masked_token_mean(delta.abs(), keep),
        "importance/kl": masked_token_mean(ratio - 1 - delta, keep),
        "importance/over_cap_frac": masked_token_mean((delta.abs() > log_cap).float(), keep),
    }
    if mode == "monitor":
        return None, metrics
    if mode == "truncate":
        return ratio.clamp(max=cap), metrics
    tokens = keep.sum(dim=1).clamp(min=1)
    mean_delta = delta.sum(dim=1) / tokens  # masked tokens hold 0
    inside = mean_delta.abs() <= log_cap
    metrics["importance/masked_frac"] = (~inside & keep.any(dim=1)).float().mean()
    return inside.to(ratio.dtype)[:, None].expand_as(ratio).clone(), metrics
