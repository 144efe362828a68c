import math

import pytest
import torch

from apo.algorithms import LOSS_AGGREGATIONS, aggregate_loss, ppo_clip_loss

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])


def test_seq_mean_token_mean_by_hand():
    # row means: (1 + 2 + 3) / 3 = 2 and 4 / 1 = 4 -> (2 + 4) / 2 = 3
    assert aggregate_loss(LOSS, MASK).item() == pytest.approx(3.0)


def test_token_mean_by_hand():
    # (1 + 2 + 3 + 4) / 4 tokens = 2.5
    assert aggregate_loss(LOSS, MASK, "token-mean").item() == pytest.approx(2.5)


def test_seq_mean_token_sum_norm_by_hand():
    # row sums 6 and 4; / max_tokens 4 -> 1.5 and 1.0 -> mean 1.25
    assert aggregate_loss(LOSS, MASK, "seq-mean-token-sum-norm", max_tokens=4).item() == (
        pytest.approx(1.25)
    )
    # default C = padded width 3: (6 / 3 + 4 / 3) / 2 = 5 / 3
    assert aggregate_loss(LOSS, MASK, "seq-mean-token-sum-norm").item() == pytest.approx(5 / 3)


@pytest.mark.parametrize("mode", LOSS_AGGREGATIONS.names())
def test_fully_masked_rows_are_ignored(mode):
    padded_loss = torch.cat([LOSS, torch.full((1, 3), 9.0)])
    padded_mask = torch.cat([MASK, torch.zeros(1, 3, dtype=MASK.dtype)])
    assert aggregate_loss(padded_loss, padded_mask, mode, max_tokens=3).item() == pytest.approx(
        aggregate_loss(LOSS, MASK, mode, max_tokens=3).item()
    )


@pytest.mark.parametrize("mode", LOSS_AGGREGATIONS.names())
def test_all_masked_batch_gives_zero_with_a_graph(mode):
    loss = torch.ones(2, 3, requires_grad=True)
    result = aggregate_loss(loss, torch.zeros(2, 3), mode)
    assert result.item() == 0.0
    result.backward()
    assert torch.equal(loss.grad, torch.zeros(2, 3))


@pytest.mark.parametrize("mode", LOSS_AGGREGATIONS.names())
def test_nan_at_masked_positions_does_not_leak(mode):
    loss = torch.tensor([[1.0, float("nan")], [2.0, float("inf")]], requires_grad=True)
    mask = torch.tensor([[True, False], [True, False]])
    result = aggregate_loss(loss, mask, mode)
    result.backward()
    assert math.isfinite(result.item())
    assert torch.isfinite(loss.grad).all()


def test_aggregate_errors_name_the_problem():
    with pytest.raises(ValueError, match="allowed: seq-mean-token-mean, seq-mean-token-sum-norm"):
        aggregate_loss(LOSS, MASK, "sum")
    with pytest.raises(ValueError, match="empty"):
        aggregate_loss(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"\[batch, tokens\]"):
        aggregate_loss(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="max_tokens must be positive"):
        aggregate_loss(LOSS, MASK, "seq-mean-token-sum-norm", max_tokens=0)


def _logp_for_ratio(ratios):
    old = torch.full((len(ratios), 1), -1.0)
    logp = (old + torch.tensor(ratios).log()[:, None]).requires_grad_()
    return logp, old


def test_on_policy_loss_is_minus_the_mean_advantage():
    # ratio = 1 everywhere: l_t = -A; per-row mean then batch mean -> -(1 - 3) / 2 = 1
    logp = torch.randn(2, 4, requires_grad=True)
    loss, metrics = ppo_clip_loss(logp, logp.detach(), torch.tensor([1.0, -3.0]), torch.ones(2, 4))
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    # d loss / d logp_it = -A_i / (T * B) = -A_i / 8
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 8] * 4, [3 / 8] * 4]))
    assert metrics["policy/clip_frac"].item() == 0.0
    assert metrics["policy/ratio_mean"].item() == pytest.approx(1.0)
    assert metrics["policy/approx_kl"].item() == pytest.approx(0.0)


def test_clipping_by_hand():
    # row 0: A = +1, r = 1.5 -> -min(1.5, 1.2) = -1.2 (clipped high, no gradient)
    # row 1: A = -1, r = 0.5 -> -min(-0.5, -0.8) = 0.8 (clipped low, no gradient)
    # row 2: A = -1, r = 1.5 -> -min(-1.5, -1.2) = 1.5 (not clipped)
    # row 3: A = +1, r = 0.9 -> -min(0.9, 0.9) = -0.9 (inside the range)
    logp, old = _logp_for_ratio([1.5, 0.5, 1.5, 0.9])
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])
    loss, metrics = ppo_clip_loss(logp, old, adv, torch.ones(4, 1))
    assert loss.item() == pytest.approx((-1.2 + 0.8 + 1.5 - 0.9) / 4)
    loss.backward()
    # gradients: d(-A r)/d logp = -A r / 4 for unclipped rows, 0 for clipped ones
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0], [0.0], [1.5 / 4], [-0.9 / 4]]))
    assert metrics["policy/clip_frac"].item() == pytest.approx(0.5)
    assert metrics["policy/clip_frac_high"].item() == pytest.approx(0.25)
    assert metrics["policy/clip_frac_low"].item() == pytest.approx(0.25)
    assert metrics["policy/ratio_max"].item() == pytest.approx(1.5)


def test_clip_higher_lets_positive_ratios_grow_further():
    # A = +1, r = 1.25: clipped to 1.2 with eps 0.2, free with eps_high 0.28
    logp, old = _logp_for_ratio([1.25])
    symmetric, _ = ppo_clip_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 1))
    higher, _ = ppo_clip_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 1), eps_high=0.28)
    assert symmetric.item() == pytest.approx(-1.2)
    assert higher.item() == pytest.approx(-1.25)


def test_dual_clip_bounds_exploded_negative_ratios():
    # A = -1, r = 5: PPO loss 5; dual clip c = 3 bounds it at -c * A = 3.
    logp, old = _logp_for_ratio([5.0, 2.0])
    adv = torch.tensor([-1.0, -1.0])
    loss, metrics = ppo_clip_loss(logp, old, adv, torch.ones(2, 1), dual_clip=3.0)
    assert loss.item() == pytest.approx((3.0 + 2.0) / 2)
    assert metrics["policy/dual_clip_frac"].item() == pytest.approx(0.5)


def test_per_token_advantages_are_accepted():
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, _ = ppo_clip_loss(logp, logp.detach(), torch.tensor([[2.0, -1.0]]), torch.ones(1, 2))
    assert loss.item() == pytest.approx(-0.5)


def test_padding_garbage_does_not_reach_the_loss_or_gradient():
    logp = torch.tensor([[-1.0, float("-inf")], [-2.0, float("nan")]], requires_grad=True)
    old = torch.tensor([[-1.0, 0.0], [-2.0, 0.0]])
    mask = torch.tensor([[1, 0], [1, 0]])
    loss, metrics = ppo_clip_loss(logp, old, torch.tensor([1.0, -1.0]), mask)
    loss.backward()
    assert loss.item() == pytest.approx(0.0)
    assert torch.isfinite(logp.grad).all()
    assert all(math.isfinite(value.item()) for value in metrics.values())


def test_only_the_current_log_probs_get_gradients():
    logp = torch.zeros(2, 2, requires_grad=True)
    old = torch.zeros(2, 2, requires_grad=True)
    adv = torch.tensor([1.0, -1.0], requires_grad=True)
    loss, _ = ppo_clip_loss(logp, old, adv, torch.ones(2, 2))
    loss.backward()
    assert logp.grad is not None
    assert old.grad is None and adv.grad is None


def test_bf16_log_probs_train_through_a_float32_loss():
    logp = torch.zeros(2, 3, dtype=torch.bfloat16, requires_grad=True)
    loss, _ = ppo_clip_loss(logp, logp.detach(), torch.tensor([1.0, -1.0]), torch.ones(2, 3))
    assert loss.dtype == torch.float32
    loss.backward()
    assert logp.grad.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps_low": 1.0}, "eps_low"),
        ({"eps_low": -0.1}, "eps_low"),
        ({"eps_high": -0.1}, "eps_high"),
        ({"dual_clip": 1.0}, "dual_clip must be > 1"),
    ],
)
def test_bad_clip_settings_are_rejected(kwargs, message):
    logp = torch.zeros(1, 1)
    with pytest.raises(ValueError, match=message):
        ppo_clip_loss(logp, logp, torch.ones(1), torch.ones(1, 1), **kwargs)


def test_advantage_count_must_match_the_batch():
    with pytest.raises(ValueError, match="advantages has 3 entries for 2 sequences"):
        ppo_clip_loss(torch.zeros(2, 1), torch.zeros(2, 1), torch.ones(3), torch.ones(2, 1))


@pytest.mark.parametrize("mode", LOSS_AGGREGATIONS.names())
def test_micro_batches_with_the_whole_batch_denominator_sum_to_the_batch_loss(mode):
    generator = torch.Generator().manual_seed(0)
    loss = torch.rand(6, 5, generator=generator)
    mask = torch.rand(6, 5, generator=generator) < 0.7
    mask[:, 0] = True
    mask[4] = False  # an empty row is not counted
    whole = aggregate_loss(loss, mask, mode, max_tokens=5)
    count = mask.sum().item() if mode == "token-mean" else mask.any(dim=1).sum().item()
    parts = sum(
        aggregate_loss(loss[rows], mask[rows], mode, max_tokens=5, denominator=count)
        for rows in (slice(0, 2), slice(2, 3), slice(3, 6))
    )
    torch.testing.assert_close(parts, whole)
