import pytest

from apo.training.failures import RewardFailure, RewardFailureStreak


def summed(tensor):
    return tensor  # one process


def test_a_reward_failing_on_every_response_for_too_many_steps_stops_the_run():
    streak = RewardFailureStreak(limit=2)
    streak.check({"judge": {"errors": 4}}, 4, summed)
    with pytest.raises(RewardFailure, match="reward 'judge' failed on every response for 2 steps"):
        streak.check({"judge": {"timeouts": 1, "errors": 3}}, 4, summed)


def test_a_step_with_one_good_score_breaks_the_streak():
    streak = RewardFailureStreak(limit=2)
    for failed in (4, 3, 4, 3):
        streak.check({"judge": {"errors": failed}}, 4, summed)
    assert streak.steps == {"judge": 0}
