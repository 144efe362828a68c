import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from apo.algorithms import group_difficulty


def test_difficulty_by_hand():
    # Groups of 4: 2/4 correct -> 0.5, 4/4 -> 0, 0/4 -> 1.
    correct = torch.tensor([1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    expected = torch.tensor([0.5] * 4 + [0.0] * 4 + [1.0] * 4)
    assert torch.equal(group_difficulty(correct, 4), expected)


def test_difficulty_of_one_right_in_three():
    # 1 - 1/3 = 2/3 for every member of the group.
    d = group_difficulty(torch.tensor([0, 1, 0]), 3)
    torch.testing.assert_close(d, torch.full((3,), 2 / 3))


def test_group_of_one_is_zero_or_one():
    assert torch.equal(group_difficulty(torch.tensor([1, 0, 1]), 1), torch.tensor([0.0, 1.0, 0.0]))


def test_float_zero_one_correctness_is_accepted():
    d = group_difficulty(torch.tensor([1.0, 0.0]), 2)
    assert torch.equal(d, torch.tensor([0.5, 0.5]))


def test_non_binary_correctness_is_rejected():
    with pytest.raises(ValueError, match="only 0 and 1"):
        group_difficulty(torch.tensor([1.0, 0.5]), 2)


def test_empty_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="correct is empty"):
        group_difficulty(torch.tensor([], dtype=torch.bool), 2)


@given(
    st.integers(1, 8).flatmap(
        lambda g: st.tuples(st.just(g), st.lists(st.booleans(), min_size=g, max_size=g * 5))
    )
)
def test_difficulty_is_one_minus_group_solve_rate(case):
    group_size, values = case
    values = values[: len(values) - len(values) % group_size]
    correct = torch.tensor(values, dtype=torch.bool)
    d = group_difficulty(correct, group_size).reshape(-1, group_size)
    assert bool(((d >= 0) & (d <= 1)).all())
    assert bool((d == d[:, :1]).all())  # constant within each group
    expected = 1 - correct.reshape(-1, group_size).float().mean(dim=1)
    torch.testing.assert_close(d[:, 0], expected)
