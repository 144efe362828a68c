import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from apo.algorithms import OFFICIAL_STCR_BASE, apply_stcr, stcr_weights

T, F = True, False


def test_official_base_by_hand():
    # Correct lengths 100 and 120 -> mean 110. The wrong 300-token answer is 190
    # tokens longer: w = 1 - 1.00001^-190 = 0.0018982. The wrong 90-token one is
    # shorter: w = 0.
    w = stcr_weights(torch.tensor([100, 120, 300, 90]), torch.tensor([T, T, F, F]), 4)
    expected = torch.tensor([0.0, 0.0, 1 - OFFICIAL_STCR_BASE**-190, 0.0])
    torch.testing.assert_close(w, expected)
    assert math.isclose(1 - 1.00001**-190, 0.0018982, rel_tol=1e-4)


def test_base_two_by_hand_with_a_tie():
    # Mean correct length (2 + 4) / 2 = 3. Wrong, length 5: diff 2 -> 1 - 2^-2 = 0.75.
    # Wrong, length 3: diff 0 (a tie is not longer) -> 0.
    w = stcr_weights(torch.tensor([2, 4, 5, 3]), torch.tensor([T, T, F, F]), 4, base=2.0)
    assert torch.equal(w, torch.tensor([0.0, 0.0, 0.75, 0.0]))


def test_zero_length_responses():
    # The correct answer is empty (length 0); wrong lengths 0, 3, 0 -> only the 3 is
    # longer: 1 - 2^-3 = 0.875.
    w = stcr_weights(torch.tensor([0, 0, 3, 0]), torch.tensor([T, F, F, F]), 4, base=2.0)
    assert torch.equal(w, torch.tensor([0.0, 0.0, 0.875, 0.0]))


def test_groups_without_a_correct_answer_get_no_penalty():
    w = stcr_weights(torch.tensor([10, 5000, 2, 2]), torch.tensor([F, F, T, T]), 2, base=2.0)
    assert torch.equal(w, torch.zeros(4))


def test_all_correct_groups_get_no_penalty():
    w = stcr_weights(torch.tensor([10, 5000]), torch.tensor([T, T]), 2, base=2.0)
    assert torch.equal(w, torch.zeros(2))


def test_group_of_one_gets_no_penalty():
    w = stcr_weights(torch.tensor([10, 5000]), torch.tensor([T, F]), 1, base=2.0)
    assert torch.equal(w, torch.zeros(2))


def test_each_group_uses_its_own_correct_mean():
    # Group 1: correct mean 4, wrong 6 -> 1 - 2^-2. Group 2: correct mean 8, wrong 6 -> 0.
    w = stcr_weights(torch.tensor([4, 6, 8, 6]), torch.tensor([T, F, T, F]), 2, base=2.0)
    assert torch.equal(w, torch.tensor([0.0, 0.75, 0.0, 0.0]))


def test_float_lengths_are_accepted():
    w = stcr_weights(torch.tensor([2.0, 3.5]), torch.tensor([T, F]), 2, base=2.0)
    torch.testing.assert_close(w, torch.tensor([0.0, 1 - 2**-1.5]))


@pytest.mark.parametrize("base", [1.0, 0.5, -2.0])
def test_base_must_exceed_one(base):
    with pytest.raises(ValueError, match="base must be > 1"):
        stcr_weights(torch.tensor([1, 2]), torch.tensor([T, F]), 2, base=base)


def test_negative_lengths_are_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        stcr_weights(torch.tensor([1, -2]), torch.tensor([T, F]), 2)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="correct has shape"):
        stcr_weights(torch.tensor([1, 2]), torch.tensor([T, F, F]), 2)


def test_empty_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        stcr_weights(torch.tensor([]), torch.tensor([], dtype=torch.bool), 2)


def test_apply_stcr_official_scales_every_advantage():
    # A * (1 + w): [1 * 1, -1 * 1.5, -2 * 1.25, 0.5 * 1.5]
    adv = torch.tensor([1.0, -1.0, -2.0, 0.5])
    w = torch.tensor([0.0, 0.5, 0.25, 0.5])
    assert torch.equal(apply_stcr(adv, w), torch.tensor([1.0, -1.5, -2.5, 0.75]))


def test_apply_stcr_negatives_only_leaves_positive_advantages():
    # The last response is wrong but well formatted (A > 0): unchanged here.
    adv = torch.tensor([1.0, -1.0, -2.0, 0.5])
    w = torch.tensor([0.0, 0.5, 0.25, 0.5])
    shaped = apply_stcr(adv, w, negatives_only=True)
    assert torch.equal(shaped, torch.tensor([1.0, -1.5, -2.5, 0.5]))


def test_apply_stcr_keeps_the_advantage_dtype():
    adv = torch.tensor([1.0, -1.0], dtype=torch.bfloat16)
    assert apply_stcr(adv, torch.tensor([0.0, 0.5])).dtype == torch.bfloat16


groups = st.integers(1, 8).flatmap(
    lambda g: st.lists(
        st.tuples(st.integers(0, 4096), st.booleans()), min_size=g, max_size=4 * g
    ).map(lambda rows: (g, rows[: len(rows) - len(rows) % g]))
)
bases = st.floats(1.000001, 1.001)


@given(groups, bases)
def test_weights_are_in_unit_interval_and_zero_for_correct(case, base):
    group_size, rows = case
    assume(rows)
    lengths = torch.tensor([length for length, _ in rows])
    correct = torch.tensor([ok for _, ok in rows])
    w = stcr_weights(lengths, correct, group_size, base=base)
    assert bool(((w >= 0) & (w < 1)).all())
    assert bool((w[correct] == 0).all())


@given(groups, bases, st.integers(1, 2000), st.data())
def test_weight_is_monotone_in_the_length_of_a_wrong_answer(case, base, extra, data):
    group_size, rows = case
    wrong = [i for i, (_, ok) in enumerate(rows) if not ok]
    assume(wrong)
    i = data.draw(st.sampled_from(wrong))
    lengths = torch.tensor([length for length, _ in rows])
    correct = torch.tensor([ok for _, ok in rows])
    before = stcr_weights(lengths, correct, group_size, base=base)
    longer = lengths.clone()
    longer[i] += extra
    after = stcr_weights(longer, correct, group_size, base=base)
    assert after[i] >= before[i]
    others = torch.arange(len(rows)) != i
    assert torch.equal(after[others], before[others])  # the correct mean did not move
