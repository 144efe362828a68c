"""A step's responses: this process's prompts, G responses to each, their scores.

With dynamic sampling (DAPO), further rounds of prompts until the step has its
groups with varied rewards (:mod:`apo.dynamic_sampling`). Generating and scoring
run agreed (:mod:`apo.agreement`): a failure on one process stops every process,
with its message.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from apo.batching import prompt_seed
from apo.config import TrainConfig
from apo.data import PromptDataset, ResumableSampler
from apo.distributed import Backend
from apo.dynamic_sampling import collect_groups, join_groups, renumbered
from apo.out_of_memory import OutOfMemory
from apo.rewards import RewardRunner, RewardSample
from apo.rewards.overlong import overlong_penalty, with_overlong_penalty
from apo.rewards.runner import RewardResult
from apo.rollout import PromptInput, Rollout, RolloutEngine
from apo.training.timing import PhaseTimer


@dataclass
class StepRollouts:
    """This process's share of a step: its examples (dataset indices), their prompts,
    responses and scores, how many responses it generated (more than it keeps
    with dynamic sampling) and dynamic sampling's metrics."""

    indices: list[int]
    prompts: list[PromptInput]
    rollouts: list[Rollout]
    scored: RewardResult
    generated: int
    metrics: dict[str, float]


@dataclass
class RolloutCollector:
    """Generates and scores a step's responses for this process (``positions``: its
    places in each batch of the sampler)."""

    config: TrainConfig
    dataset: PromptDataset
    sampler: ResumableSampler
    positions: list[int]
    engine: RolloutEngine
    rewards: RewardRunner
    backend: Backend

    def collect(self, step_index: int, timer: PhaseTimer) -> StepRollouts:
        """Step ``step_index``'s (0-based) responses and scores; the time of generation
        and scoring (over every round) goes to ``timer``."""
        cfg = self.config

        def generate_round(
            round_index: int,
        ) -> tuple[list[int], list[PromptInput], list[Rollout], RewardResult]:
            global_indices = self.sampler.next_batch()
            indices = [global_indices[p] for p in self.positions]
            prompts = self.dataset.prompt_inputs(indices)
            rollouts, scored = self.backend.agreed(
                lambda: self._generate_and_score(prompts, indices, step_index, round_index, timer)
            )
            return indices, prompts, rollouts, scored

        if not cfg.rollout.dynamic_sampling:
            indices, prompts, rollouts, scored = generate_round(0)
            return StepRollouts(indices, prompts, rollouts, scored, len(rollouts), {})

        def scored_round(round_index: int) -> tuple[list[int], list[Rollout], RewardResult]:
            indices, _, rollouts, scored = generate_round(round_index)
            return indices, rollouts, scored  # the prompts of the groups kept are built below

        collected = collect_groups(
            scored_round,
            self.positions,
            cfg.batch.prompts_per_step,
            cfg.rollout.group_size,
            cfg.rollout.dynamic_sampling_max_rounds,
            lambda local: self.backend.gather_objects([local]),
        )
        indices = [group.example for group in collected.groups]
        return StepRollouts(
            indices,
            self.dataset.prompt_inputs(indices),
            renumbered(collected.groups),
            join_groups(collected.groups, collected.failures),
            collected.generated,
            collected.metrics,
        )

    def _generate_and_score(
        self,
        prompts: list[PromptInput],
        indices: list[int],
        step_index: int,
        round_index: int,
        timer: PhaseTimer,
    ) -> tuple[list[Rollout], RewardResult]:
        """G responses to each of these examples, and their scores."""
        cfg = self.config
        with timer.phase("time/generation"):
            seeds = None
            if cfg.rollout.seed_per_prompt:  # a round's prompts after the earlier rounds'
                offset = round_index * cfg.batch.prompts_per_step
                seeds = [
                    prompt_seed(cfg.training.seed, step_index, offset + p) for p in self.positions
                ]
            rollouts = self._generate(prompts, seeds, step_index + 1)
        with timer.phase("time/reward"):
            examples = [self.dataset.examples[i] for i in indices]
            scored = self.rewards.score(
                [RewardSample.of(examples[r.prompt_index], r.text) for r in rollouts]
            )
            if cfg.rewards.overlong_buffer:
                lengths = torch.tensor([r.length for r in rollouts])
                scored = with_overlong_penalty(
                    scored,
                    overlong_penalty(
                        lengths,
                        cfg.rollout.max_new_tokens,
                        cfg.rewards.overlong_buffer,
                        cfg.rewards.overlong_penalty,
                    ),
                )
        return rollouts, scored

    def _generate(
        self, prompts: list[PromptInput], seeds: list[int] | None, step: int
    ) -> list[Rollout]:
        """The engine's rollouts; it retries smaller batches itself after running out of
        memory, so an out-of-memory error here means one prompt's group is too big."""
        rollout = self.config.rollout
        try:
            rollouts = self.engine.generate(prompts, rollout, seeds)
        except OutOfMemory:
            raise OutOfMemory(
                f"out of memory generating at step {step}, even for one prompt "
                f"at a time. Lower rollout.group_size (now {rollout.group_size}) or "
                f"rollout.max_new_tokens (now {rollout.max_new_tokens}), or use smaller images"
            ) from None
        if self.engine.record_logprobs and any(r.sampling_logps is None for r in rollouts):
            raise ValueError(
                f"rollout.engine {rollout.engine!r} records no sampling log-probs, which "
                f"algorithm.importance_sampling={self.config.algorithm.importance_sampling!r} "
                "needs: use rollout.engine native or transformers"
            )
        return rollouts
