import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from apo.algorithms import (
    aggregate_loss,
    apo_loss,
    apo_objective,
    group_advantages,
    kl_divergence,
    ppo_clip_loss,
    shape_advantages,
)

T, F = True, False

# One group of G = 4: two right (reward 1), two wrong (reward 0).
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0])
CORRECT = torch.tensor([T, F, F, T])
LENGTHS = torch.tensor([2, 4, 2, 2])  # the first wrong answer is 2 tokens longer
MASK = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]])
ROW_DELTA = torch.tensor([0.1, 0.2, 0.0, -0.1])  # ref_logp - logp, constant per row


def _log_probs():
    logp = torch.full((4, 4), -1.0, requires_grad=True)
    ref_logp = logp.detach() + ROW_DELTA[:, None]
    return logp, logp.detach().clone(), ref_logp


def k3(delta):
    return math.exp(delta) - 1 - delta


def test_apo_loss_by_hand():
    # GRPO: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735 -> A = +-0.866025.
    a = 0.5 / math.sqrt(1 / 3)
    # STCR (base 2): correct mean length 2; wrong answer of length 4 -> w = 1 - 2^-2 = 0.75,
    # so A_1 = -a * 1.75; the other wrong answer (length 2) is unchanged.
    shaped = [a, -1.75 * a, -a, a]
    # DADS: d = 1 - 2/4 = 0.5; positives get f = 1 - exp(-e/2) = 0.743115, others 1.
    f = 1 - math.exp(-math.e / 2)
    kl_weights = [f, 1.0, 1.0, f]
    # On-policy (ratio 1): per-row token mean of -A, then batch mean.
    policy = -sum(shaped) / 4
    # k3 is constant within each row, so each row's token mean is k3(delta_row).
    kl = sum(w * k3(float(d)) for w, d in zip(kl_weights, ROW_DELTA, strict=True)) / 4
    beta = 0.5

    logp, old, ref = _log_probs()
    loss, metrics = apo_loss(
        logp, old, ref, MASK, REWARDS, CORRECT, LENGTHS, 4, stcr_base=2.0, beta=beta
    )
    assert loss.item() == pytest.approx(policy + beta * kl, rel=1e-5)
    assert metrics["loss/policy"].item() == pytest.approx(policy, rel=1e-5)
    assert metrics["loss/kl"].item() == pytest.approx(kl, rel=1e-5)
    assert metrics["stcr/penalized_frac"].item() == pytest.approx(0.25)
    assert metrics["stcr/weight_penalized_mean"].item() == pytest.approx(0.75)
    assert metrics["dads/kl_weight_pos_mean"].item() == pytest.approx(f, rel=1e-5)
    assert metrics["dads/shaped_frac"].item() == pytest.approx(0.5)
    assert metrics["difficulty/mean"].item() == pytest.approx(0.5)
    # The unweighted token mean of k3 over the 10 response tokens.
    kl_tokens = 2 * k3(0.1) + 4 * k3(0.2) + 2 * k3(0.0) + 2 * k3(-0.1)
    assert metrics["kl/mean"].item() == pytest.approx(kl_tokens / 10, rel=1e-5)


def _grpo_reference(logp, old, ref, mask, rewards, group_size, beta):
    advantages = group_advantages(rewards, group_size)
    policy, _ = ppo_clip_loss(logp, old, advantages, mask)
    kl = aggregate_loss(kl_divergence(logp, ref), mask)
    return policy + beta * kl


def test_both_flags_off_is_plain_grpo():
    logp, old, ref = _log_probs()
    old = old + 0.05 * torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    loss, _ = apo_loss(logp, old, ref, MASK, REWARDS, CORRECT, LENGTHS, 4, dads=False, stcr=False)
    expected = _grpo_reference(logp, old, ref, MASK, REWARDS, 4, beta=1e-3)
    torch.testing.assert_close(loss, expected)


def test_dads_alone_changes_only_the_kl_term():
    logp, old, ref = _log_probs()
    _, grpo = apo_loss(logp, old, ref, MASK, REWARDS, CORRECT, LENGTHS, 4, dads=False, stcr=False)
    _, dads = apo_loss(logp, old, ref, MASK, REWARDS, CORRECT, LENGTHS, 4, dads=True, stcr=False)
    assert dads["loss/policy"] == grpo["loss/policy"]
    assert dads["loss/kl"] < grpo["loss/kl"]  # positives of a d = 0.5 group weigh 0.74


def test_stcr_alone_changes_only_the_advantages():
    logp, old, ref = _log_probs()
    args = (logp, old, ref, MASK, REWARDS, CORRECT, LENGTHS, 4)
    _, grpo = apo_loss(*args, dads=False, stcr=False, stcr_base=2.0)
    _, stcr = apo_loss(*args, dads=False, stcr=True, stcr_base=2.0)
    assert stcr["loss/kl"] == grpo["loss/kl"]
    assert stcr["loss/policy"] > grpo["loss/policy"]  # a stronger push on the long wrong answer


def test_gradients_flow_only_through_the_current_log_probs():
    logp, old, ref = _log_probs()
    old.requires_grad_()
    ref.requires_grad_()
    rewards = REWARDS.clone().requires_grad_()
    loss, _ = apo_loss(logp, old, ref, MASK, rewards, CORRECT, LENGTHS, 4)
    loss.backward()
    assert logp.grad is not None and torch.isfinite(logp.grad).all()
    assert logp.grad[MASK == 0].abs().sum() == 0  # padding gets no gradient
    assert old.grad is None and ref.grad is None and rewards.grad is None


def test_lengths_default_to_the_mask():
    logp, old, ref = _log_probs()
    explicit, _ = apo_loss(logp, old, ref, MASK, REWARDS, CORRECT, MASK.sum(-1), 4)
    implicit, _ = apo_loss(logp, old, ref, MASK, REWARDS, CORRECT, None, 4)
    assert explicit.item() == implicit.item()


def test_without_reference_beta_must_be_zero():
    logp, old, _ = _log_probs()
    with pytest.raises(ValueError, match="ref_logp is required when beta > 0"):
        apo_loss(logp, old, None, MASK, REWARDS, CORRECT, LENGTHS, 4)
    loss, metrics = apo_loss(logp, old, None, MASK, REWARDS, CORRECT, LENGTHS, 4, beta=0.0)
    assert loss.item() == metrics["loss/policy"].item()
    assert "loss/kl" not in metrics


def test_negative_beta_is_rejected():
    logp, old, ref = _log_probs()
    with pytest.raises(ValueError, match="beta must be >= 0"):
        apo_objective(logp, old, ref, MASK, torch.zeros(4), beta=-1.0)


def test_row_count_must_match_the_rewards():
    logp, old, ref = _log_probs()
    with pytest.raises(ValueError, match="logp has 4 rows for 8 rewards"):
        apo_loss(logp, old, ref, MASK, REWARDS.repeat(2), CORRECT.repeat(2), LENGTHS.repeat(2), 4)


def test_empty_batch_is_a_clear_error():
    empty = torch.zeros(0, 3)
    with pytest.raises(ValueError, match="empty"):
        apo_loss(empty, empty, empty, empty, torch.zeros(0), torch.zeros(0), None, 4)


def test_stcr_negatives_only_spares_well_formatted_wrong_answers():
    # Rewards = accuracy + 0.5 format. The one right answer is badly formatted (1.0);
    # the long wrong answer is well formatted (0.5) and beats the group mean 0.375,
    # so its GRPO advantage is positive.
    rewards = torch.tensor([1.0, 0.5, 0.0, 0.0])
    correct = torch.tensor([T, F, F, F])
    official = shape_advantages(rewards, correct, LENGTHS, 4, stcr_base=2.0)
    careful = shape_advantages(
        rewards, correct, LENGTHS, 4, stcr_base=2.0, stcr_negatives_only=True
    )
    assert official.raw_advantages[1] > 0
    assert official.advantages[1] == pytest.approx(official.raw_advantages[1] * 1.75)
    assert careful.advantages[1] == official.raw_advantages[1]
    assert official.metrics["stcr/penalized_frac"] == 0.25
    assert careful.metrics["stcr/penalized_frac"] == 0.0
    assert math.isnan(careful.metrics["stcr/weight_penalized_mean"])


def test_the_step_metrics_see_the_shaping_as_its_settings_made_it():
    """The trainer's metrics read the algorithm section the rollout was shaped with:
    each shaping metric of the step equals the shaping's own."""
    from apo.algorithms import AlgorithmConfig
    from apo.metrics import rollout_metrics

    rewards, correct = torch.tensor([1.0, 0.5, 0.0, 0.0]), torch.tensor([T, F, F, F])
    config = AlgorithmConfig(stcr_base=2.0, stcr_negatives_only=True)
    shaped = shape_advantages(rewards, correct, LENGTHS, 4, config)
    values = {
        "length": LENGTHS.float(),
        "truncated": torch.zeros(4),
        "correct": correct.float(),
        "total": rewards,
        "difficulty": shaped.difficulty,
        "raw_advantage": shaped.raw_advantages,
        "advantage": shaped.advantages,
        "kl_weight": shaped.kl_weights,
        "stcr_weight": shaped.stcr_weights,
        "kept": torch.ones(4),
    }
    metrics = rollout_metrics(values, 4, config)
    for key, value in shaped.metrics.items():
        assert metrics[key] == pytest.approx(value.item(), nan_ok=True), key
    assert metrics["stcr/penalized_frac"] == 0.0  # the positive wrong answer is spared


def test_group_diagnostics():
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    correct = rewards.bool()
    shaped = shape_advantages(rewards, correct, torch.ones(6), 2)
    assert shaped.metrics["groups/all_correct_frac"].item() == pytest.approx(1 / 3)
    assert shaped.metrics["groups/all_wrong_frac"].item() == pytest.approx(1 / 3)
    assert shaped.metrics["groups/uniform_reward_frac"].item() == pytest.approx(2 / 3)


def test_bf16_log_probs():
    logp, old, ref = _log_probs()
    loss32, _ = apo_loss(logp, old, ref, MASK, REWARDS, CORRECT, LENGTHS, 4)
    logp16 = logp.detach().to(torch.bfloat16).requires_grad_()
    loss16, _ = apo_loss(logp16, old.bfloat16(), ref.bfloat16(), MASK, REWARDS, CORRECT, LENGTHS, 4)
    assert loss16.dtype == torch.float32
    torch.testing.assert_close(loss16, loss32, atol=1e-2, rtol=1e-2)
    loss16.backward()
    assert torch.isfinite(logp16.grad.float()).all()


batches = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5)).flatmap(
    lambda shape: st.tuples(
        st.just(shape),
        st.lists(
            st.sampled_from([0.0, 0.5, 1.0, 1.5]),
            min_size=shape[0] * shape[1],
            max_size=shape[0] * shape[1],
        ),
        st.integers(0, 2**31 - 1),
    )
)


@settings(max_examples=50)
@given(batches, st.sampled_from(["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"]))
def test_flags_off_equals_grpo_and_every_variant_is_finite(case, aggregation):
    (groups, group_size, tokens), rewards, seed = case
    generator = torch.Generator().manual_seed(seed)
    n = groups * group_size
    rewards = torch.tensor(rewards)
    correct = rewards >= 1.0
    logp = -torch.rand(n, tokens, generator=generator) * 3
    old = logp - 0.1 * torch.randn(n, tokens, generator=generator)
    ref = logp + 0.1 * torch.randn(n, tokens, generator=generator)
    mask = torch.rand(n, tokens, generator=generator) < 0.8
    mask[:, 0] = True
    kwargs = {"aggregation": aggregation}

    grpo, _ = apo_loss(
        logp, old, ref, mask, rewards, correct, None, group_size, dads=False, stcr=False, **kwargs
    )
    advantages = group_advantages(rewards, group_size)
    policy, _ = ppo_clip_loss(logp, old, advantages, mask, **kwargs)
    expected = policy + 1e-3 * aggregate_loss(kl_divergence(logp, ref), mask, aggregation)
    torch.testing.assert_close(grpo, expected)

    for dads in (False, True):
        for stcr in (False, True):
            loss, metrics = apo_loss(
                logp,
                old,
                ref,
                mask,
                rewards,
                correct,
                None,
                group_size,
                dads=dads,
                stcr=stcr,
                **kwargs,
            )
            assert torch.isfinite(loss)
            assert metrics["loss/total"] == loss.detach()
