"""DAPO's soft overlong punishment, and how it meets STCR and the overlong filter."""

from collections import Counter

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from apo.algorithms import shape_advantages, stcr_weights, trained_responses
from apo.rewards.overlong import overlong_penalty, with_overlong_penalty
from apo.rewards.runner import RewardResult


def test_the_penalty_by_hand():
    # L_max 10, L_cache 4: nothing up to 6 tokens, then -1/4 per token, -1 at 10.
    lengths = torch.tensor([0, 5, 6, 7, 8, 9, 10])
    expected = torch.tensor([0.0, 0.0, 0.0, -0.25, -0.5, -0.75, -1.0])
    assert torch.equal(overlong_penalty(lengths, 10, 4), expected)
    assert torch.equal(overlong_penalty(lengths, 10, 4, penalty=0.5), expected / 2)
    assert torch.equal(overlong_penalty(lengths, 10, 10), -lengths / 10)  # the whole length


@given(
    max_length=st.integers(1, 512),
    data=st.data(),
    penalty=st.floats(0, 10, allow_nan=False),
)
def test_the_penalty_falls_from_zero_to_minus_penalty(max_length, data, penalty):
    buffer = data.draw(st.integers(1, max_length))
    lengths = torch.arange(max_length + 1)
    values = overlong_penalty(lengths, max_length, buffer, penalty)
    assert torch.all(values[: max_length - buffer + 1] == 0)
    assert values[-1].item() == pytest.approx(-penalty)
    assert torch.all(values[1:] <= values[:-1])  # never rewards a longer answer
    assert torch.all((values >= -penalty - 1e-5) & (values <= 0))


@pytest.mark.parametrize(("buffer", "penalty"), [(0, 1.0), (11, 1.0), (4, -1.0)])
def test_bad_settings_are_refused(buffer, penalty):
    with pytest.raises(ValueError, match="overlong"):
        overlong_penalty(torch.tensor([1]), 10, buffer, penalty)


def test_the_penalty_joins_the_total_not_correctness():
    scored = RewardResult(
        total=torch.tensor([1.0, 0.0]),
        components={"accuracy": torch.tensor([1.0, 0.0])},
        correct=torch.tensor([True, False]),
        failures={"accuracy": Counter()},
    )
    joined = with_overlong_penalty(scored, torch.tensor([-0.5, -1.0]))
    assert torch.equal(joined.total, torch.tensor([0.5, -1.0]))
    assert torch.equal(joined.components["overlong"], torch.tensor([-0.5, -1.0]))
    assert torch.equal(joined.correct, scored.correct)  # DADS and STCR read this
    assert joined.failures["overlong"] == Counter()


def test_with_stcr_a_long_wrong_answer_is_pushed_down_twice():
    """The penalty lowers the reward of a long answer, so its group advantage is more
    negative; STCR then multiplies the advantage of a wrong one by 1 + w. A long
    right answer keeps its DADS treatment and gets no STCR weight."""
    accuracy = torch.tensor([1.0, 1.0, 0.0, 0.0])
    correct = accuracy == 1
    lengths = torch.tensor([10, 12, 30, 100])
    penalty = overlong_penalty(lengths, max_length=100, buffer=40)
    assert torch.equal(penalty, torch.tensor([0.0, 0.0, 0.0, -1.0]))
    plain = shape_advantages(accuracy, correct, lengths, 4, stcr=True, dads=False)
    punished = shape_advantages(accuracy + penalty, correct, lengths, 4, stcr=True, dads=False)
    assert punished.advantages[3] < plain.advantages[3] < 0
    weights = stcr_weights(lengths, correct, 4)
    assert weights[3] > 0 and weights[0] == weights[1] == 0
    assert torch.allclose(punished.advantages, punished.raw_advantages * (1 + weights))


def test_the_overlong_filter_drops_truncated_answers_from_the_loss_only():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    truncated = torch.tensor([False, True, False, True, False, False])
    keep = trained_responses(rewards, truncated, 3, varied_only=False, overlong_filter=True)
    assert keep.tolist() == [True, False, True, False, True, True]
    keep = trained_responses(rewards, truncated, 3, varied_only=True, overlong_filter=True)
    assert keep.tolist() == [True, False, True, False, True, True]  # both groups varied
    keep = trained_responses(rewards, truncated, 3, varied_only=True, overlong_filter=False)
    assert keep.tolist() == [True] * 6
    uniform = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    keep = trained_responses(uniform, truncated, 3, varied_only=True, overlong_filter=True)
    assert keep.tolist() == [False, False, False, False, True, True]  # 1st uniform, 4th cut
