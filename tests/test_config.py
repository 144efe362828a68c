import inspect

import pytest

from apo.algorithms import apo_objective, shape_advantages
from apo.config import AlgorithmConfig, ConfigError, load_config, merge, parse_overrides


def test_overrides_become_a_nested_mapping_of_yaml_values():
    tree = parse_overrides(
        [
            "algorithm.beta=0.01",
            "rollout.stop_strings=[a, b]",
            "lora.enabled=true",
            "model.attn_implementation=",
        ]
    )
    assert tree == {
        "algorithm": {"beta": 0.01},
        "rollout": {"stop_strings": ["a", "b"]},
        "lora": {"enabled": True},
        "model": {"attn_implementation": None},
    }


@pytest.mark.parametrize("item", ["beta", "=1", "a.b=[unclosed"])
def test_malformed_overrides_are_rejected(item):
    with pytest.raises(ConfigError):
        parse_overrides([item])


def test_merge_keeps_sibling_keys():
    assert merge({"a": {"x": 1, "y": 2}, "b": 3}, {"a": {"y": 5}}) == {
        "a": {"x": 1, "y": 5},
        "b": 3,
    }


def test_algorithm_name_sets_the_flags_unless_given():
    assert AlgorithmConfig(name="apo").use_dads and AlgorithmConfig(name="apo").use_stcr
    assert not AlgorithmConfig(name="grpo").use_dads
    ablation = AlgorithmConfig(name="grpo", dads=True)
    assert ablation.use_dads and not ablation.use_stcr


def test_unknown_registry_names_list_the_allowed_ones():
    with pytest.raises(
        ValueError, match="dads_schedule='cosine' is unknown; allowed: constant, exp, official"
    ):
        AlgorithmConfig(dads_schedule="cosine")


def test_keyword_arguments_match_the_algorithm_functions():
    config = AlgorithmConfig()
    assert set(config.shaping_kwargs()) <= set(inspect.signature(shape_advantages).parameters)
    assert set(config.objective_kwargs()) <= set(inspect.signature(apo_objective).parameters)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)
