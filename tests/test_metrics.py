import math

import pytest
import torch

from apo.metrics import rollout_metrics, throughput


def test_rollout_metrics_by_hand():
    # two groups of 2: group 1 = (right, 10 tokens), (wrong, 30 tokens); group 2 = two wrong
    values = {
        "length": torch.tensor([10.0, 30.0, 20.0, 40.0]),
        "truncated": torch.tensor([0.0, 1.0, 0.0, 0.0]),
        "correct": torch.tensor([1.0, 0.0, 0.0, 0.0]),
        "total": torch.tensor([1.5, 0.5, 0.0, 0.0]),
        "difficulty": torch.tensor([0.5, 0.5, 1.0, 1.0]),
        "raw_advantage": torch.tensor([0.7, -0.7, 0.0, 0.0]),
        "advantage": torch.tensor([0.7, -0.8, 0.0, 0.0]),
        "kl_weight": torch.tensor([0.74, 1.0, 1.0, 1.0]),
        "stcr_weight": torch.tensor([0.0, 0.2, 0.0, 0.0]),
        "kept": torch.tensor([1.0, 1.0, 0.0, 0.0]),
        "reward/format": torch.tensor([1.0, 1.0, 0.0, 0.0]),
    }
    m = rollout_metrics(values, group_size=2)
    assert m["reward/total"] == pytest.approx(0.5)
    assert m["reward/accuracy_rate"] == 0.25
    assert m["length/correct_mean"] == 10 and m["length/incorrect_mean"] == 30
    assert m["length/incorrect_median"] == 30  # torch's median of [30, 20, 40]
    assert m["length/truncated_frac"] == 0.25
    assert m["dads/kl_weight_pos_mean"] == pytest.approx(0.74)
    assert m["dads/shaped_frac"] == 0.25
    assert (
        m["stcr/weight_penalized_mean"] == pytest.approx(0.2) and m["stcr/penalized_frac"] == 0.25
    )
    assert m["difficulty/solved_0_of_2"] == 0.5 and m["difficulty/solved_1_of_2"] == 0.5
    assert m["difficulty/solved_2_of_2"] == 0.0
    assert m["groups/uniform_reward_frac"] == 0.5 and m["groups/filtered_frac"] == 0.5
    assert m["reward/format"] == 0.5


def test_means_over_nothing_are_nan():
    values = {
        k: torch.zeros(2)
        for k in (
            "length",
            "truncated",
            "correct",
            "total",
            "difficulty",
            "raw_advantage",
            "advantage",
            "kl_weight",
            "stcr_weight",
            "kept",
        )
    }
    m = rollout_metrics(values, group_size=2)
    assert math.isnan(m["length/correct_mean"]) and math.isnan(m["dads/kl_weight_pos_mean"])


def test_throughput():
    t = throughput(1000, {"time/generation": 2.0, "time/step": 4.0})
    assert t == {"throughput/generated_tokens_per_s": 500.0, "throughput/step_tokens_per_s": 250.0}


def test_stcr_negatives_only_counts_only_negative_advantages_as_penalised():
    # the wrong answer with weight 0.2 has a positive raw advantage: not penalised
    values = {
        "length": torch.tensor([10.0, 30.0]),
        "truncated": torch.zeros(2),
        "correct": torch.tensor([1.0, 0.0]),
        "total": torch.tensor([1.0, 0.5]),
        "difficulty": torch.tensor([0.5, 0.5]),
        "raw_advantage": torch.tensor([0.7, 0.1]),
        "advantage": torch.tensor([0.7, 0.12]),
        "kl_weight": torch.tensor([0.74, 0.74]),
        "stcr_weight": torch.tensor([0.0, 0.2]),
        "kept": torch.ones(2),
    }
    assert rollout_metrics(values, group_size=2)["stcr/penalized_frac"] == 0.5
    careful = rollout_metrics(values, group_size=2, stcr_negatives_only=True)
    assert careful["stcr/penalized_frac"] == 0.0
    assert math.isnan(careful["stcr/weight_penalized_mean"])
