"""Reward functions given from Python are stored as the string workers import them by."""

import runpy
import textwrap

import pytest
import yaml

from apo.config import TrainConfig, config_to_yaml
from apo.rewards import (
    RewardComponentConfig,
    RewardConfig,
    accuracy_reward,
    resolve_reward,
    reward_reference,
)


def shortness(response, answer, **info):
    return 1.0 / (1 + len(response))


def test_a_module_function_is_named_module_colon_function():
    reference = reward_reference(shortness)
    assert reference == f"{__name__}:shortness"
    assert resolve_reward(reference) is shortness


def test_a_built_in_reward_keeps_its_short_name():
    assert reward_reference(accuracy_reward) == "accuracy"


def test_a_function_of_a_script_run_as_main_is_named_by_its_file(tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(
        textwrap.dedent(
            """
            from apo.rewards import RewardConfig

            def bonus(response, answer, **info):
                return 1.0

            config = RewardConfig(components=["accuracy", bonus])
            """
        )
    )
    config = runpy.run_path(str(script), run_name="__main__")["config"]
    reference = f"{script.resolve()}:bonus"
    assert [c.name for c in config.components] == ["accuracy", reference]
    # As a worker does: import the file, whose top level builds the config again.
    assert resolve_reward(reference)("anything", "3") == 1.0


def test_components_may_be_functions_names_or_settings():
    config = RewardConfig(
        components=[
            accuracy_reward,
            "format",
            {"name": shortness, "weight": 0.2},
            RewardComponentConfig(name="rewards.py:f", weight=0.1),
        ],
        correctness=accuracy_reward,
    )
    assert [(c.name, c.weight) for c in config.components] == [
        ("accuracy", 1.0),
        ("format", 1.0),
        (f"{__name__}:shortness", 0.2),
        ("rewards.py:f", 0.1),
    ]
    assert config.correctness == "accuracy"


def test_the_saved_config_holds_the_reference_and_loads_again():
    config = TrainConfig(
        model={"name_or_path": "tiny"},
        data={"path": "data.jsonl"},
        rewards={"components": ["accuracy", shortness]},
    )
    saved = yaml.safe_load(config_to_yaml(config))
    assert saved["rewards"]["components"][1]["name"] == f"{__name__}:shortness"
    assert TrainConfig.model_validate(saved).rewards == config.rewards


def test_a_correctness_function_must_be_a_component():
    with pytest.raises(ValueError, match=r"rewards\.correctness="):
        RewardConfig(components=["accuracy"], correctness=shortness)


def test_a_lambda_is_refused_in_one_line_naming_it():
    with pytest.raises(TypeError) as error:
        RewardConfig(components=["accuracy", lambda response, answer, **info: 1.0])
    message = str(error.value)
    assert "<lambda> is a lambda" in message
    assert "top level of a module" in message
    assert "\n" not in message


def test_a_nested_function_is_refused_naming_it():
    def inner(response, answer, **info):
        return 1.0

    with pytest.raises(TypeError, match=r"inner is not at the top level of its module"):
        RewardConfig(components=["accuracy", {"name": inner, "weight": 0.5}])


def test_a_bound_method_is_refused_naming_it():
    class Scorer:
        def score(self, response, answer, **info):
            return 1.0

    with pytest.raises(TypeError, match=r"Scorer.score is a bound method"):
        reward_reference(Scorer().score)


def test_other_callables_are_refused():
    with pytest.raises(TypeError, match="is not a plain function"):
        reward_reference(print)
