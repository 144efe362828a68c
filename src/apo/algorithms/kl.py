"""Per-token estimators of KL(pi || pi_ref) from sampled tokens (Schulman's k1, k2, k3).

With delta = log pi_ref(y_t) - log pi(y_t) for tokens sampled from pi:

    k1 = -delta                   unbiased, high variance, can be negative
    k2 = delta^2 / 2              biased, low variance, >= 0
    k3 = exp(delta) - 1 - delta   unbiased, low variance, >= 0 (APO's choice)

``low_var_kl`` is k3 made robust to outliers as in verl: delta clamped to
[-20, 20] before the exponential and the result clamped to [0, 10].
A new estimator is one decorated function of ``delta``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from apo.algorithms.groups import as_float, check_same_shape
from apo.registry import Registry

KlEstimator = Callable[[Tensor], Tensor]
KL_ESTIMATORS: Registry[KlEstimator] = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def k1(delta: Tensor) -> Tensor:
    return -delta


@KL_ESTIMATORS.register("k2")
def k2(delta: Tensor) -> Tensor:
    return 0.5 * delta.square()


@KL_ESTIMATORS.register("k3")
def k3(delta: Tensor) -> Tensor:
    # expm1 keeps precision where delta ~ 0, i.e. where policy and reference agree.
    return torch.expm1(delta) - delta


@KL_ESTIMATORS.register("low_var_kl")
def low_var_kl(delta: Tensor) -> Tensor:
    return k3(delta.clamp(-20.0, 20.0)).clamp(0.0, 10.0)


def kl_divergence(
    logp: Tensor,
    ref_logp: Tensor,
    estimator: str = "k3",
    *,
    clamp: float | None = None,
) -> Tensor:
    """Per-token KL estimate between the policy and the reference.

    Args:
        logp: [...] log-probs of the sampled tokens under the current policy
            (gradients flow through it).
        ref_logp: [...] same tokens under the frozen reference (detached here).
        estimator: ``k1``, ``k2``, ``k3`` or ``low_var_kl`` (see module docstring).
        clamp: if given, the estimate is clamped to [-clamp, clamp]
            (OpenRLHF clamps to 10).

    Returns:
        [...] float32 (float64 for float64 input) per-token estimates; mask them
        with the response mask before reducing.
    """
    estimate_fn = KL_ESTIMATORS.get(estimator)
    check_same_shape(logp, "logp", ref_logp=ref_logp)
    delta = as_float(ref_logp.detach()) - as_float(logp)
    kl = estimate_fn(delta)
    if clamp is not None:
        if clamp <= 0:
            raise ValueError(f"KL clamp must be > 0, got {clamp!r}")
        kl = kl.clamp(-clamp, clamp)
    return kl
