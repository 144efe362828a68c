"""Importance weights for a sampler/trainer mismatch, by hand and as properties."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from apo.algorithms import importance_weights, ppo_clip_loss

TRAINER = torch.tensor([[0.0, -1.0, -2.0], [-1.0, -1.0, 0.0]])
SAMPLER = torch.tensor([[0.0, -1.5, 9.0], [-2.0, -2.0, 0.0]])
MASK = torch.tensor([[True, True, False], [True, True, False]])  # the 9.0 is padding


def test_metrics_by_hand():
    # delta on the tokens: row 0: 0, 0.5; row 1: 1, 1
    _, metrics = importance_weights(TRAINER, SAMPLER, MASK, "monitor", cap=2.0)
    assert metrics["importance/logp_abs_diff"].item() == pytest.approx(2.5 / 4)
    k3 = [0.0, math.exp(0.5) - 1.5, math.exp(1) - 2, math.exp(1) - 2]
    assert metrics["importance/kl"].item() == pytest.approx(sum(k3) / 4)
    assert metrics["importance/over_cap_frac"].item() == pytest.approx(2 / 4)  # 1 > ln 2


def test_truncated_weights_by_hand():
    weights, _ = importance_weights(TRAINER, SAMPLER, MASK, "truncate", cap=2.0)
    expected = torch.tensor([[1.0, math.exp(0.5), 1.0], [2.0, 2.0, 1.0]])  # e > 2: capped
    assert torch.allclose(weights, expected)


def test_sequence_mask_by_hand():
    # geometric-mean ratios: row 0 exp(0.25) in [1/2, 2]; row 1 exp(1) = e > 2
    weights, metrics = importance_weights(TRAINER, SAMPLER, MASK, "mask", cap=2.0)
    assert weights.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    assert metrics["importance/masked_frac"].item() == 0.5


@given(
    logp=st.lists(st.floats(-20, 0, allow_nan=False), min_size=1, max_size=12),
    cap=st.floats(1.01, 10),
)
def test_the_same_log_probs_weigh_one_and_measure_zero(logp, cap):
    trainer = torch.tensor([logp])
    mask = torch.ones_like(trainer, dtype=torch.bool)
    for mode in ("truncate", "mask"):
        weights, metrics = importance_weights(trainer, trainer.clone(), mask, mode, cap)
        assert torch.all(weights == 1)
        assert all(value.item() == 0 for value in metrics.values())


def test_token_weights_scale_each_tokens_policy_loss():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.7]], requires_grad=True)
    mask = torch.ones(2, 2, dtype=torch.bool)
    advantages = torch.tensor([1.0, -1.0])
    plain, _ = ppo_clip_loss(logp, logp.detach(), advantages, mask, aggregation="token-mean")
    ones, _ = ppo_clip_loss(
        logp, logp.detach(), advantages, mask, aggregation="token-mean", token_weights=mask.float()
    )
    assert torch.equal(plain, ones)
    weights = torch.tensor([[2.0, 2.0], [0.0, 0.0]])  # the second response left out
    weighted, _ = ppo_clip_loss(
        logp, logp.detach(), advantages, mask, aggregation="token-mean", token_weights=weights
    )
    assert weighted.item() == pytest.approx(2 * (-1.0) * 2 / 4)  # -A r w summed / 4 tokens


@pytest.mark.parametrize(("mode", "cap"), [("off", 2.0), ("clip", 2.0), ("truncate", 1.0)])
def test_bad_settings_are_refused(mode, cap):
    with pytest.raises(ValueError, match="importance"):
        importance_weights(TRAINER, SAMPLER, MASK, mode, cap)
