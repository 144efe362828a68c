import math
import textwrap
import time

import pytest
import torch

from apo.rewards import RewardConfig, RewardRunner, RewardSample, resolve_reward

USER_REWARDS = textwrap.dedent(
    """
    import time

    def length_bonus(response, answer, **info):
        return min(len(response), 100) / 100

    def hang(response, answer, **info):
        if "slow" in response:
            while True:
                time.sleep(0.01)
        return 1.0

    def boom(response, answer, **info):
        raise RuntimeError("reward bug")

    def not_a_number(response, answer, **info):
        return float("nan") if "nan" in response else "high"

    def sees_the_row(response, answer, **info):
        return 1.0 if info.get("category") == "count" and answer == "3" else 0.0

    def math_verify_loaded(response, answer, **info):
        import sys

        return 1.0 if "math_verify" in sys.modules else 0.0
    """
)

GOOD = "<think>1, 2, 3</think><answer>3</answer>"


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rewards") / "my_rewards.py"
    path.write_text(USER_REWARDS)
    return path


@pytest.fixture(scope="module")
def runner(user_file):
    names = ["length_bonus", "hang", "boom", "not_a_number", "sees_the_row", "math_verify_loaded"]
    config = RewardConfig(
        components=[{"name": "accuracy"}, {"name": "format", "weight": 0.5}]
        + [{"name": f"{user_file}:{n}", "weight": 0.0} for n in names],
        timeout_seconds=1.0,
        num_workers=2,
    )
    with RewardRunner(config) as runner:
        yield runner


def test_official_reward_is_accuracy_plus_half_format(runner):
    samples = [
        RewardSample(GOOD, "3"),
        RewardSample("<answer>3</answer>", "3"),  # right, badly formatted
        RewardSample("<think>x</think><answer>4</answer>", "3"),  # wrong, well formatted
        RewardSample("no idea", "3"),
    ]
    result = runner.score(samples)
    assert result.total.tolist() == [1.5, 1.0, 0.5, 0.0]
    assert result.correct.tolist() == [True, True, False, False]
    assert result.components["accuracy"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert result.components["format"].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_custom_rewards_get_the_row_fields(runner):
    result = runner.score(
        [RewardSample(GOOD, "3", {"category": "count"}), RewardSample(GOOD, "3", {})]
    )
    assert result.components["sees_the_row"].tolist() == [1.0, 0.0]
    assert result.components["length_bonus"][0].item() == pytest.approx(len(GOOD) / 100)


def test_failures_score_zero_are_counted_and_training_goes_on(runner, caplog):
    samples = [
        RewardSample(GOOD + " slow", "3"),
        RewardSample(GOOD + " nan", "3"),
        RewardSample(GOOD, "\\frac{"),
    ]
    start = time.monotonic()
    result = runner.score(samples)
    assert time.monotonic() - start < 10  # the hung reward was cut off, not waited for
    assert result.components["hang"].tolist() == [0.0, 1.0, 1.0]
    assert result.failures["hang"] == {"timeouts": 1}
    assert result.components["boom"].tolist() == [0.0, 0.0, 0.0]
    assert result.failures["boom"] == {"errors": 3}
    assert result.failures["not_a_number"] == {"invalid": 3}  # NaN once, a string twice
    assert result.failures["accuracy"] == {"bad_ground_truth": 1}  # never a free point
    assert result.components["accuracy"].tolist() == [1.0, 1.0, 0.0]
    assert all(math.isfinite(v) for v in result.total.tolist())
    # the pool recovered: the next batch is scored normally
    again = runner.score([RewardSample(GOOD, "3")])
    assert again.components["hang"].tolist() == [1.0]


def test_workers_start_with_math_verify_loaded(runner):
    """Loading it takes seconds on a loaded machine, which a task would otherwise
    spend inside its time limit: in a new worker, and in one that replaces a killed one."""
    samples = [RewardSample(GOOD, "3")] * 4
    assert runner.score(samples).components["math_verify_loaded"].tolist() == [1.0] * 4
    runner.score([RewardSample(GOOD + " slow", "3")])  # a worker is killed and replaced
    assert runner.score(samples).components["math_verify_loaded"].tolist() == [1.0] * 4


def test_warnings_are_given_once_per_component_and_kind(user_file, caplog):
    config = RewardConfig(
        components=[{"name": "accuracy"}, {"name": f"{user_file}:boom"}], num_workers=1
    )
    with RewardRunner(config) as runner, caplog.at_level("WARNING"):
        runner.score([RewardSample(GOOD, "3", {"id": "row-7"})] * 3)
        runner.score([RewardSample(GOOD, "3")] * 2)
    warnings = [r.getMessage() for r in caplog.records if "reward 'boom'" in r.getMessage()]
    assert len(warnings) == 1
    assert "row id row-7" in warnings[0] and "reward bug" in warnings[0]


def test_weights_scale_the_total(user_file):
    config = RewardConfig(
        components=[
            {"name": "accuracy", "weight": 2.0},
            {"name": f"{user_file}:length_bonus", "weight": -1.0},
        ],
        num_workers=1,
    )
    with RewardRunner(config) as runner:
        result = runner.score([RewardSample(GOOD, "3")])
    assert result.total.item() == pytest.approx(2.0 - len(GOOD) / 100)
    assert result.total.dtype == torch.float32


def test_rewards_by_module_reference():
    function = resolve_reward("apo.rewards.format:format_reward")
    assert function(GOOD) == 1.0


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("nowhere.py:f", "no such file"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("apo.rewards.format:missing", "has no function 'missing'"),
        ("speed", "unknown reward 'speed'; allowed: accuracy, format"),
    ],
)
def test_bad_references_fail_before_any_work(reference, message):
    with pytest.raises(ValueError, match=message):
        RewardRunner(RewardConfig(components=[{"name": "accuracy"}, {"name": reference}]))


def test_a_reward_file_that_fails_to_import(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise ImportError('missing dependency')\n")
    with pytest.raises(ValueError, match=r"importing .*broken\.py failed"):
        RewardRunner(RewardConfig(components=[{"name": "accuracy"}, {"name": f"{path}:f"}]))


def test_config_errors():
    with pytest.raises(ValueError, match="named twice: accuracy"):
        RewardConfig(components=[{"name": "accuracy"}, {"name": "accuracy"}])
    with pytest.raises(ValueError, match="correctness='format2' is not a component"):
        RewardConfig(correctness="format2")
    with pytest.raises(ValueError, match="components is empty"):
        RewardConfig(components=[], correctness="accuracy")
    with pytest.raises(ValueError, match="timeout_seconds"):
        RewardConfig(timeout_seconds=0)
