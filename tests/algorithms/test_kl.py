import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from apo.algorithms import KL_ESTIMATORS, kl_divergence

LOGP = torch.tensor([math.log(0.5)])
REF_LOGP = torch.tensor([math.log(0.25)])


def test_estimators_by_hand():
    # delta = log 0.25 - log 0.5 = -ln 2 = -0.693147
    # k1 = ln 2 = 0.693147; k2 = (ln 2)^2 / 2 = 0.240227; k3 = 0.5 - 1 + ln 2 = 0.193147
    ln2 = math.log(2)
    torch.testing.assert_close(kl_divergence(LOGP, REF_LOGP, "k1"), torch.tensor([ln2]))
    torch.testing.assert_close(kl_divergence(LOGP, REF_LOGP, "k2"), torch.tensor([ln2**2 / 2]))
    torch.testing.assert_close(kl_divergence(LOGP, REF_LOGP, "k3"), torch.tensor([ln2 - 0.5]))
    torch.testing.assert_close(kl_divergence(LOGP, REF_LOGP), torch.tensor([ln2 - 0.5]))


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3", "low_var_kl"])
def test_identical_policies_have_zero_kl(estimator):
    logp = torch.tensor([[-0.1, -2.0, -7.5]])
    assert torch.equal(kl_divergence(logp, logp.clone(), estimator), torch.zeros(1, 3))


def test_low_var_kl_clamps_outliers():
    # delta = +30 -> clamped to 20 -> k3(20) ~ 4.85e8 -> clamped to 10.
    # delta = -30 -> clamped to -20 -> k3(-20) = e^-20 - 1 + 20 ~ 19 -> clamped to 10.
    # delta = 0.1 -> plain k3 = e^0.1 - 1.1 = 0.0051709.
    logp = torch.zeros(3)
    ref = torch.tensor([30.0, -30.0, 0.1])
    kl = kl_divergence(logp, ref, "low_var_kl")
    torch.testing.assert_close(kl, torch.tensor([10.0, 10.0, math.exp(0.1) - 1.1]))


def test_clamp_bounds_the_estimate():
    kl = kl_divergence(torch.zeros(2), torch.tensor([-5.0, 5.0]), "k1", clamp=1.0)
    assert torch.equal(kl, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="clamp must be > 0"):
        kl_divergence(torch.zeros(1), torch.zeros(1), clamp=0.0)


def test_k1_and_k3_are_unbiased_estimates_of_the_true_kl():
    # Tokens sampled from pi; the mean estimate must approach KL(pi || pi_ref).
    generator = torch.Generator().manual_seed(0)
    pi = torch.tensor([0.5, 0.3, 0.2])
    ref = torch.tensor([0.2, 0.3, 0.5])
    true_kl = float((pi * (pi / ref).log()).sum())  # 0.2749
    tokens = torch.multinomial(pi, 200_000, replacement=True, generator=generator)
    logp, ref_logp = pi.log()[tokens], ref.log()[tokens]
    for estimator in ("k1", "k3"):
        estimate = kl_divergence(logp, ref_logp, estimator).mean().item()
        assert abs(estimate - true_kl) < 0.01, estimator


def test_gradient_flows_only_through_the_policy():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    ref = torch.tensor([-1.5, -1.0], requires_grad=True)
    kl_divergence(logp, ref).sum().backward()
    # d k3 / d logp = 1 - exp(delta): delta = -0.5 -> 0.3935; delta = 1 -> -1.7183
    torch.testing.assert_close(logp.grad, 1 - torch.exp(torch.tensor([-0.5, 1.0])))
    assert ref.grad is None


def test_bf16_inputs_give_float32_estimates():
    logp = torch.tensor([-1.0, -2.0]).to(torch.bfloat16)
    ref = torch.tensor([-1.5, -1.0]).to(torch.bfloat16)
    kl = kl_divergence(logp, ref)
    assert kl.dtype == torch.float32
    torch.testing.assert_close(kl, kl_divergence(logp.float(), ref.float()))


def test_unknown_estimator_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: k1, k2, k3, low_var_kl"):
        kl_divergence(LOGP, REF_LOGP, "k4")
    assert set(KL_ESTIMATORS.names()) == {"k1", "k2", "k3", "low_var_kl"}


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="ref_logp has shape"):
        kl_divergence(torch.zeros(2, 3), torch.zeros(2, 4))


@given(st.lists(st.tuples(st.floats(-30, 0), st.floats(-30, 0)), min_size=1, max_size=64))
def test_k2_k3_and_low_var_kl_are_non_negative(pairs):
    logp = torch.tensor([a for a, _ in pairs])
    ref = torch.tensor([b for _, b in pairs])
    for estimator in ("k2", "k3", "low_var_kl"):
        assert bool((kl_divergence(logp, ref, estimator) >= 0).all()), estimator
