"""The one evaluation path: generate answers, judge them, one result row per response.

``apo eval`` (:mod:`apo.evaluation.runner`) and the trainer's periodic
evaluations (:mod:`apo.evaluation.training`) both call :func:`answer_questions`;
:func:`apo.evaluation.report.summarize` turns the rows into the figures
(docs/EVALUATION.md names them).

A row holds the caller's fields of its question (at least ``id``), then
``sample``, ``response``, the verdict (``correct``; with a benchmark's rule also
``extracted``, and ``ground_truth_error`` or ``judge_timeout``; with reward
components ``rewards``), ``length``, ``truncated`` and ``formatted``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from apo.data import Example
from apo.evaluation.benchmarks import Benchmark, Question
from apo.evaluation.judge import Judge
from apo.rewards import RewardRunner, RewardSample, extract_answer, is_well_formatted
from apo.rollout import PromptInput, Rollout, RolloutEngine, SamplingConfig

Verdicts = Callable[[list[Rollout]], list[dict[str, Any]]]
"""Judges the rollouts of a batch of questions: one verdict (a dict with ``correct``) each."""


def answer_questions(
    engine: RolloutEngine,
    prompts: Sequence[PromptInput],
    questions: Sequence[dict[str, Any]],
    sampling: SamplingConfig,
    judge: Verdicts,
) -> list[dict[str, Any]]:
    """``sampling.group_size`` responses to each prompt, judged: one row per response.

    ``questions[k]`` holds the fields of prompt k's question that every row of it
    repeats (at least ``id``); ``judge`` gives the verdicts.
    """
    rollouts = engine.generate(prompts, sampling) if prompts else []
    verdicts = judge(rollouts) if rollouts else []
    return [
        {
            **questions[rollout.prompt_index],
            "sample": index % sampling.group_size,
            "response": rollout.text,
            **verdict,
            "length": rollout.length,
            "truncated": rollout.truncated,
            "formatted": is_well_formatted(rollout.text),
        }
        for index, (rollout, verdict) in enumerate(zip(rollouts, verdicts, strict=True))
    ]


def benchmark_verdicts(
    judge: Judge, benchmark: Benchmark | str, questions: Sequence[Question]
) -> Verdicts:
    """The benchmark's own rule applied to each response's answer (its ``<answer>``
    block); ``questions[k]`` is prompt k's question."""

    def verdicts(rollouts: list[Rollout]) -> list[dict[str, Any]]:
        answers = [extract_answer(r.text) for r in rollouts]
        items = [(questions[r.prompt_index], a) for r, a in zip(rollouts, answers, strict=True)]
        judged = judge(benchmark, items)
        return [{"extracted": a, **v} for a, v in zip(answers, judged, strict=True)]

    return verdicts


def reward_verdicts(rewards: RewardRunner, examples: Sequence[Example]) -> Verdicts:
    """The reward components on each response (correct: the correctness component
    is 1, as in training); ``examples[k]`` is prompt k's row."""

    def verdicts(rollouts: list[Rollout]) -> list[dict[str, Any]]:
        scored = rewards.score(
            [RewardSample.of(examples[r.prompt_index], r.text) for r in rollouts]
        )
        return [
            {
                "correct": bool(scored.correct[i]),
                "rewards": {name: float(values[i]) for name, values in scored.components.items()},
            }
            for i in range(len(rollouts))
        ]

    return verdicts
