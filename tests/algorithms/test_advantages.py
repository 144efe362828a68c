import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from apo.algorithms import ADVANTAGE_ESTIMATORS, group_advantages


def test_grpo_unbiased_std_by_hand():
    # r = [1, 0, 0, 0]: mean 0.25, deviations [0.75, -0.25, -0.25, -0.25],
    # unbiased var = (0.5625 + 3 * 0.0625) / 3 = 0.25, std = 0.5.
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), group_size=4)
    torch.testing.assert_close(adv, torch.tensor([1.5, -0.5, -0.5, -0.5]))


def test_grpo_biased_std_by_hand():
    # biased var = 0.75 / 4 = 0.1875, std = sqrt(0.1875) = 0.4330127.
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, unbiased=False)
    std = math.sqrt(0.1875)
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.25, -0.25, -0.25]) / std)


def test_dr_grpo_is_reward_minus_group_mean():
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, method="dr_grpo")
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_rloo_uses_the_mean_of_the_other_responses():
    # A_0 = 1 - (0 + 0 + 0) / 3 = 1; A_1 = 0 - (1 + 0 + 0) / 3 = -1/3.
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, method="rloo")
    torch.testing.assert_close(adv, torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3]))


def test_groups_are_normalised_independently():
    # group 1: [1.5, 0.5] -> mean 1, unbiased std sqrt(0.5) -> +-0.5 / 0.7071 = +-0.7071
    # group 2: [0, 1]    -> mean 0.5, unbiased std sqrt(0.5) -> -+0.7071
    adv = group_advantages(torch.tensor([1.5, 0.5, 0.0, 1.0]), 2)
    half_sqrt2 = math.sqrt(0.5)
    torch.testing.assert_close(
        adv, torch.tensor([half_sqrt2, -half_sqrt2, -half_sqrt2, half_sqrt2])
    )


@pytest.mark.parametrize("method", ["grpo", "dr_grpo", "rloo"])
def test_all_equal_rewards_give_zero_advantage(method):
    # All-correct (or all-wrong) groups with equal rewards carry no signal.
    adv = group_advantages(torch.tensor([1.5, 1.5, 1.5, 0.0, 0.0, 0.0]), 3, method=method)
    assert torch.equal(adv, torch.zeros(6))


@pytest.mark.parametrize("method", ["grpo", "dr_grpo", "rloo"])
def test_group_of_one_gives_zero_advantage(method):
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.5]), 1, method=method)
    assert torch.equal(adv, torch.zeros(3))


def test_bf16_rewards_are_computed_in_float32():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 1.5, 0.0])
    adv = group_advantages(rewards.to(torch.bfloat16), 3)
    assert adv.dtype == torch.float32
    torch.testing.assert_close(adv, group_advantages(rewards, 3))


def test_float64_rewards_stay_float64():
    assert group_advantages(torch.tensor([1.0, 0.0], dtype=torch.float64), 2).dtype == (
        torch.float64
    )


def test_empty_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="rewards is empty"):
        group_advantages(torch.tensor([]), 4)


def test_partial_group_is_a_clear_error():
    with pytest.raises(ValueError, match="5 samples, not a multiple of group_size=4"):
        group_advantages(torch.zeros(5), 4)


@pytest.mark.parametrize("group_size", [0, -2, 2.0, True])
def test_bad_group_size_is_a_clear_error(group_size):
    with pytest.raises(ValueError, match="group_size must be a positive integer"):
        group_advantages(torch.zeros(4), group_size)


def test_two_dimensional_rewards_are_rejected():
    with pytest.raises(ValueError, match="must be 1-D"):
        group_advantages(torch.zeros(2, 4), 4)


def test_unknown_method_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: dr_grpo, grpo, rloo"):
        group_advantages(torch.zeros(4), 4, method="ppo")
    assert {"grpo", "dr_grpo", "rloo"} <= set(ADVANTAGE_ESTIMATORS.names())


rewards_and_group = st.integers(1, 8).flatmap(
    lambda g: st.tuples(
        st.just(g),
        st.lists(
            st.floats(-10, 10, allow_nan=False, width=32),
            min_size=g,
            max_size=4 * g,
        ).map(lambda values: values[: len(values) - len(values) % g]),
    )
)


@given(rewards_and_group, st.sampled_from(["grpo", "dr_grpo", "rloo"]))
def test_advantages_sum_to_zero_within_each_group(case, method):
    group_size, values = case
    adv = group_advantages(torch.tensor(values, dtype=torch.float64), group_size, method=method)
    sums = adv.reshape(-1, group_size).sum(dim=1)
    scale = 1 + adv.abs().max().item()
    assert torch.allclose(sums, torch.zeros_like(sums), atol=1e-9 * scale * group_size)


@given(
    st.floats(-100, 100, allow_nan=False, width=32),
    st.integers(2, 16),
    st.sampled_from(["grpo", "dr_grpo", "rloo"]),
)
def test_a_group_of_equal_rewards_has_exactly_zero_advantages(value, group_size, method):
    # float32, as in training: rounding the mean of equal values (e.g. three 7.9469)
    # once gave GRPO advantages of 477 for a group that carries no signal
    rewards = torch.tensor([value] * group_size + [0.0, 1.0] * group_size, dtype=torch.float32)
    adv = group_advantages(rewards, group_size, method=method)
    assert (adv[:group_size] == 0).all()


def test_equal_float32_rewards_whose_mean_rounds():
    rewards = torch.tensor([7.946947838744212] * 3, dtype=torch.float32)
    assert rewards.mean() != rewards[0]  # the rounding this guards against
    assert (group_advantages(rewards, 3) == 0).all()


@given(rewards_and_group, st.floats(-5, 5, allow_nan=False))
def test_grpo_is_invariant_to_a_reward_shift(case, shift):
    group_size, values = case
    rewards = torch.tensor(values, dtype=torch.float64)
    # dr_grpo and rloo are shift-invariant exactly; grpo too, up to the eps in the std.
    for method in ("grpo", "dr_grpo", "rloo"):
        torch.testing.assert_close(
            group_advantages(rewards + shift, group_size, method=method),
            group_advantages(rewards, group_size, method=method),
            atol=1e-6,
            rtol=1e-6,
        )
