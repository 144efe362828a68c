"""Dynamic sampling: which groups a step trains on, over rounds and processes."""

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from apo.batching import rank_positions
from apo.dynamic_sampling import (
    collect_groups,
    join_groups,
    renumbered,
    select_groups,
    split_groups,
)
from apo.rewards.runner import RewardResult
from apo.rollout import Rollout

G = 2


def round_maker(patterns: list[list[bool]], prompts: int):
    """generate_round(r) for a process at ``positions``: group p of round r has varied
    rewards [1, 0] where patterns[r][p], else [0, 0]; dataset index 100 r + p."""

    def make(positions):
        def generate_round(r):
            indices = [100 * r + p for p in positions]
            total = torch.tensor(
                [v for p in positions for v in ([1.0, 0.0] if patterns[r][p] else [0.0, 0.0])]
            )
            rollouts = [
                Rollout(prompt_index=k, response_ids=[i, j], text=f"{i}-{j}", finish_reason="eos")
                for k, i in enumerate(indices)
                for j in range(G)
            ]
            failures = {"accuracy": Counter({"errors": len(positions)})}
            scored = RewardResult(total, {"accuracy": total}, total == 1, failures)
            return indices, rollouts, scored

        return generate_round

    return make


def collected(patterns, prompts, max_rounds, world=1, per_update=None):
    """Every process's Collected, with a gather over simulated processes."""
    make = round_maker(patterns, prompts)
    per_update = per_update or prompts
    ranks = [rank_positions(prompts, per_update, r, world) for r in range(world)]
    # A process's gather returns every process's groups of its round (generated once
    # per round for all of them, as the real processes would in lockstep).
    rounds_seen: dict[int, list] = {}

    def gather_for(rank):
        def gather(local):
            round_index = local[0].round
            if round_index not in rounds_seen:
                rounds_seen[round_index] = [
                    split_groups(round_index, positions, *make(positions)(round_index), G)
                    for positions in ranks
                ]
            return rounds_seen[round_index]

        return gather

    return [
        collect_groups(make(ranks[r]), ranks[r], prompts, G, max_rounds, gather_for(r))
        for r in range(world)
    ]


def test_the_first_varied_groups_in_generation_order_are_kept():
    patterns = [[True, False, False, True], [False, True, True, True]]
    [result] = collected(patterns, prompts=4, max_rounds=3)
    assert [g.example for g in result.groups] == [0, 3, 101, 102]
    assert result.metrics == {
        "dynamic_sampling/rounds": 2.0,
        "dynamic_sampling/dropped_frac": 0.5,  # 4 of the 8 generated groups
        "dynamic_sampling/missing_groups": 0.0,
    }
    assert result.generated == 8 * G
    assert result.failures == {"accuracy": Counter({"errors": 8})}


def test_no_second_round_when_the_first_has_enough_groups():
    [result] = collected([[True] * 4, [True] * 4], prompts=4, max_rounds=3)
    assert [g.example for g in result.groups] == [0, 1, 2, 3]
    assert result.metrics["dynamic_sampling/rounds"] == 1
    assert result.metrics["dynamic_sampling/dropped_frac"] == 0


def test_short_of_varied_groups_after_the_last_round_equal_ones_fill_in():
    patterns = [[False, True, False, False], [False, False, True, False]]
    [result] = collected(patterns, prompts=4, max_rounds=2)
    # varied 1 and 102 first, then the first equal groups 0 and 2
    assert [g.example for g in result.groups] == [1, 102, 0, 2]
    assert [g.varied for g in result.groups] == [True, True, False, False]
    assert result.metrics["dynamic_sampling/missing_groups"] == 2
    assert result.metrics["dynamic_sampling/dropped_frac"] == pytest.approx(6 / 8)


@settings(max_examples=60)
@given(
    st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=3, max_size=3),
    st.integers(1, 3),
)
def test_two_processes_select_the_groups_one_process_does(patterns, max_rounds):
    [one] = collected(patterns, 4, max_rounds)
    two = collected(patterns, 4, max_rounds, world=2, per_update=2)
    positions = [rank_positions(4, 2, r, 2) for r in range(2)]
    merged = {
        p: g.example
        for rank in range(2)
        for p, g in zip(positions[rank], two[rank].groups, strict=True)
    }
    assert [merged[p] for p in range(4)] == [g.example for g in one.groups]
    assert two[0].metrics == two[1].metrics == one.metrics


def test_joined_groups_keep_their_rows_and_renumber_their_prompts():
    patterns = [[True, False, True, False]]
    [result] = collected(patterns, prompts=4, max_rounds=1)
    chosen, varied = select_groups(result.groups, 3)
    assert varied == 2 and [g.example for g in chosen] == [0, 2, 1]
    scored = join_groups(chosen, {})
    assert scored.total.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert scored.components["accuracy"].tolist() == scored.total.tolist()
    assert scored.correct.tolist() == [True, False, True, False, False, False]
    rollouts = renumbered(chosen)
    assert [r.prompt_index for r in rollouts] == [0, 0, 1, 1, 2, 2]
    assert [r.text for r in rollouts] == ["0-0", "0-1", "2-0", "2-1", "1-0", "1-1"]
