import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from apo.algorithms import DADS_SCHEDULES, dads_kl_weights


def test_official_schedule_by_hand():
    # d = 0.5: 1 - exp(-e * 0.5) = 1 - 0.2568 = 0.7431; d = 0.875: 1 - exp(-e/8) = 0.2880.
    w = dads_kl_weights(torch.tensor([1.0, 0.3]), torch.tensor([0.5, 0.875]))
    expected = torch.tensor([1 - math.exp(-math.e * 0.5), 1 - math.exp(-math.e * 0.125)])
    torch.testing.assert_close(w, expected)
    assert math.isclose(float(w[0]), 0.7431, abs_tol=1e-4)
    assert math.isclose(float(w[1]), 0.2880, abs_tol=1e-4)


def test_exp_schedule_by_hand():
    # d = 0.5: exp(-e * 0.5) = 0.2568.
    w = dads_kl_weights(torch.tensor([1.0]), torch.tensor([0.5]), schedule="exp")
    torch.testing.assert_close(w, torch.tensor([math.exp(-math.e * 0.5)]))


def test_constant_schedule_is_plain_grpo():
    w = dads_kl_weights(torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.5]), schedule="constant")
    assert torch.equal(w, torch.ones(2))


def test_only_positive_samples_of_mixed_groups_are_shaped():
    # (A, d): shaped only for A > 0 with 0 < d < 1.
    adv = torch.tensor([0.5, 0.0, -0.5, 0.5, 0.5])
    d = torch.tensor([0.5, 0.5, 0.5, 0.0, 1.0])
    w = dads_kl_weights(adv, d)
    assert torch.equal(w[1:], torch.ones(4))
    assert w[0] < 1


def test_bf16_difficulty_is_computed_in_float32():
    w = dads_kl_weights(torch.tensor([1.0]), torch.tensor([0.5], dtype=torch.bfloat16))
    assert w.dtype == torch.float32


def test_unknown_schedule_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: constant, exp_decay, saturating"):
        dads_kl_weights(torch.tensor([1.0]), torch.tensor([0.5]), schedule="cosine")


def test_a_new_schedule_is_one_registered_function(monkeypatch):
    def linear(difficulty):
        return 1.0 - 0.5 * difficulty

    monkeypatch.setitem(DADS_SCHEDULES._entries, "linear", linear)
    w = dads_kl_weights(torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.5]), schedule="linear")
    assert torch.equal(w, torch.tensor([0.75, 1.0]))


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="difficulty has shape"):
        dads_kl_weights(torch.tensor([1.0]), torch.tensor([0.5, 0.5]))


def test_empty_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        dads_kl_weights(torch.tensor([]), torch.tensor([]))


@given(
    st.sampled_from(["saturating", "exp_decay", "official", "exp"]),
    st.integers(2, 64).flatmap(
        lambda g: st.tuples(st.just(g), st.integers(1, g - 1), st.integers(1, g - 1))
    ),
)
def test_weights_of_positives_decrease_with_difficulty(schedule, case):
    group_size, correct_a, correct_b = case
    d = torch.tensor([1 - correct_a / group_size, 1 - correct_b / group_size])
    w = dads_kl_weights(torch.ones(2), d, schedule=schedule)
    assert bool(((w > 0) & (w <= 1)).all())
    if d[0] < d[1]:
        assert w[0] > w[1]
    elif d[0] > d[1]:
        assert w[0] < w[1]


@given(
    st.lists(
        st.tuples(st.floats(-5, 5, allow_nan=False), st.floats(0, 1)), min_size=1, max_size=32
    ),
    st.sampled_from(["saturating", "exp_decay", "constant"]),
)
def test_weights_are_in_half_open_unit_interval(rows, schedule):
    adv = torch.tensor([a for a, _ in rows])
    d = torch.tensor([x for _, x in rows])
    w = dads_kl_weights(adv, d, schedule=schedule)
    assert bool(((w > 0) & (w <= 1)).all())
    assert bool((w[adv <= 0] == 1).all())
