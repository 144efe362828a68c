"""Dynamic sampling (DAPO: Yu et al. 2025, arXiv 2503.14476, section 3.2).

A group whose G rewards are all equal has zero advantages: it adds no policy
gradient, only generation time and a share of the loss's denominator. With
``rollout.dynamic_sampling`` a step generates rounds of fresh prompts (the
sampler's next batches) until ``prompts_per_step`` groups with varied rewards
are found, or ``rollout.dynamic_sampling_max_rounds`` rounds were generated;
the step then trains on the first ``prompts_per_step`` varied groups in the
order they were generated (round, then position in the round). Short of that
many, the first groups of equal rewards fill the remaining places and are left
out of the update (they are logged, not trained on: "train on what there is").

Every process generates its share of each round, as without dynamic sampling;
the groups of all processes are then gathered, so every process selects the
same groups and takes its positions of the selected list: N processes train on
exactly the groups one process would (with ``rollout.seed_per_prompt``, on the
same responses too).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from apo.algorithms import varied_groups
from apo.rewards.runner import RewardResult
from apo.rollout import Rollout


@dataclass
class Group:
    """One prompt's G responses with their scores, and where it was generated."""

    round: int
    position: int  # in the round's batch of prompts_per_step prompts
    example: int  # dataset index
    rollouts: list[Rollout]
    total: Tensor  # [G]
    components: dict[str, Tensor]  # name -> [G]
    correct: Tensor  # [G]

    @property
    def varied(self) -> bool:
        """Not all rewards equal (``algorithms.varied_groups``, the trainer's test)."""
        return bool(varied_groups(self.total, len(self.total))[0])


def split_groups(
    round_index: int,
    positions: Sequence[int],
    examples: Sequence[int],
    rollouts: Sequence[Rollout],
    scored: RewardResult,
    group_size: int,
) -> list[Group]:
    """A round's responses (G per prompt, in ``positions`` order) as groups."""
    groups = []
    for k, (position, example) in enumerate(zip(positions, examples, strict=True)):
        rows = slice(k * group_size, (k + 1) * group_size)
        groups.append(
            Group(
                round=round_index,
                position=position,
                example=example,
                rollouts=list(rollouts[rows]),
                total=scored.total[rows],
                components={name: value[rows] for name, value in scored.components.items()},
                correct=scored.correct[rows],
            )
        )
    return groups


def select_groups(groups: Sequence[Group], needed: int) -> tuple[list[Group], int]:
    """The ``needed`` groups a step trains on and how many of them have varied rewards.

    The first ``needed`` varied groups in generation order; short of that many,
    the first groups of equal rewards, in generation order, fill the rest.
    """
    ordered = sorted(groups, key=lambda group: (group.round, group.position))
    varied = [group for group in ordered if group.varied][:needed]
    fill = [group for group in ordered if not group.varied][: needed - len(varied)]
    if len(varied) + len(fill) < needed:
        raise ValueError(f"{len(ordered)} groups generated, fewer than the {needed} needed")
    return varied + fill, len(varied)


def join_groups(groups: Sequence[Group], failures: dict[str, Counter]) -> RewardResult:
    """The scores of ``groups`` as one batch, in their order; ``failures``: this
    process's reward failures over every round it generated."""
    names = list(groups[0].components)
    return RewardResult(
        total=torch.cat([group.total for group in groups]),
        components={name: torch.cat([g.components[name] for g in groups]) for name in names},
        correct=torch.cat([group.correct for group in groups]),
        failures=failures,
    )


def renumbered(groups: Sequence[Group]) -> list[Rollout]:
    """The groups' rollouts with ``prompt_index`` their group's place in ``groups``."""
    return [
        dataclasses.replace(rollout, prompt_index=k)
        for k, group in enumerate(groups)
        for rollout in group.rollouts
    ]


@dataclass
class Collected:
    """What a step trains on, as collected on this process."""

    groups: list[Group]  # its positions of the selected groups, in their order
    failures: dict[str, Counter]  # reward failures over every response it generated
    generated: int  # responses it generated
    metrics: dict[str, float]  # dynamic_sampling/*, the same on every process


def collect_groups(
    generate_round: Callable[[int], tuple[list[int], list[Rollout], RewardResult]],
    positions: Sequence[int],
    prompts_per_step: int,
    group_size: int,
    max_rounds: int,
    gather: Callable[[list[Group]], list[list[Group]]],
) -> Collected:
    """Rounds of ``generate_round(round)`` (this process's dataset indices of the
    sampler's next batch, their rollouts and scores) until the groups of every
    process (``gather``) hold ``prompts_per_step`` with varied rewards, or
    ``max_rounds`` rounds; then :func:`select_groups`.

    Metrics: ``dynamic_sampling/rounds``, ``dropped_frac`` (the share of generated
    groups not trained on) and ``missing_groups`` (places without a varied group).
    """
    groups: list[Group] = []
    failures: dict[str, Counter] = {}
    generated = rounds = 0
    while rounds < max_rounds and sum(g.varied for g in groups) < prompts_per_step:
        indices, rollouts, scored = generate_round(rounds)
        generated += len(rollouts)
        for name, counts in scored.failures.items():
            failures[name] = failures.get(name, Counter()) + counts
        local = split_groups(rounds, positions, indices, rollouts, scored, group_size)
        groups += [group for part in gather(local) for group in part]
        rounds += 1
    chosen, varied = select_groups(groups, prompts_per_step)
    metrics = {
        "dynamic_sampling/rounds": float(rounds),
        "dynamic_sampling/dropped_frac": 1 - varied / len(groups),
        "dynamic_sampling/missing_groups": float(prompts_per_step - varied),
    }
    return Collected([chosen[p] for p in positions], failures, generated, metrics)
