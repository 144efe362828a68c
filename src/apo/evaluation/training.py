"""The trainer's periodic evaluations (``eval.datasets``), on the one evaluation path.

Each set is a training-format file judged by the reward components, or a
benchmark's files judged by its own rule. Every process answers its share of
the questions; the rows of all processes are summarised together, with the
names of ``apo eval`` (:func:`apo.evaluation.report.summarize`), and logged as
``eval/<set>/<metric>``; the rows themselves go to ``record`` (the trainer writes
them to ``evals.jsonl``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apo.data import DataReport, PromptDataset, render_prompt
from apo.evaluation.answers import answer_questions, benchmark_verdicts, reward_verdicts
from apo.evaluation.benchmarks import Question, get_benchmark
from apo.evaluation.config import EvalConfig as EvalConfig  # its former home
from apo.evaluation.config import EvalSetConfig
from apo.evaluation.judge import Judge
from apo.evaluation.report import summarize
from apo.rewards import RewardRunner
from apo.rollout import RolloutEngine, SamplingConfig


@dataclass
class EvalData:
    """One evaluation set, loaded: its rows with rendered prompts, and a benchmark's
    questions (None for a training-format set, judged by the rewards)."""

    config: EvalSetConfig
    dataset: PromptDataset
    questions: list[Question] | None = None


def load_eval_set(config: EvalSetConfig, processor: Any, is_multimodal: bool) -> EvalData:
    """A training-format set, or a benchmark's questions as prompts."""
    if config.benchmark is None:
        return EvalData(config, PromptDataset.load(config.data, processor, is_multimodal))
    benchmark = get_benchmark(config.benchmark)
    questions = benchmark.questions(
        config.data.path, config.split or benchmark.splits[0], config.data.limit
    )
    examples = [question.example() for question in questions]
    prompts = [render_prompt(e, processor, config.data.prompt, is_multimodal) for e in examples]
    report = DataReport(rows=len(examples), kept=len(examples))
    return EvalData(config, PromptDataset(examples, prompts, report), questions)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)  # None: a mean over nothing


class PeriodicEvaluation:
    """The sets of ``eval.datasets``, loaded once, evaluated whenever asked."""

    def __init__(
        self,
        datasets: dict[str, EvalSetConfig],
        processor: Any,
        is_multimodal: bool,
        rewards: RewardRunner,
        judge_timeout: float,
    ) -> None:
        self.sets = {
            name: load_eval_set(config, processor, is_multimodal)
            for name, config in datasets.items()
        }
        self.rewards = rewards
        self.judge = Judge(timeout=judge_timeout)  # its workers start with a benchmark set

    def evaluate(
        self,
        engine: RolloutEngine,
        rollout: SamplingConfig,
        *,
        rank: int = 0,
        world: int = 1,
        gather: Callable[[list], list] = lambda rows: rows,
        record: Callable[[str, list[dict[str, Any]]], None] = lambda name, rows: None,
    ) -> dict[str, float]:
        """``eval/<set>/<metric>`` of every set. Process ``rank`` of ``world`` answers
        every world-th question; ``gather`` collects the rows of all processes, which
        ``record(set name, rows)`` receives before they are summarised."""
        metrics: dict[str, float] = {}
        for name, data in self.sets.items():
            rows = gather(self._answer(data, engine, rollout, rank, world))
            record(name, rows)
            summary = summarize(rows)
            metrics |= {
                f"eval/{name}/{key}": _number(value)
                for key, value in summary.items()
                if value is None or isinstance(value, (int, float))
            }
        return metrics

    def _answer(
        self, data: EvalData, engine: RolloutEngine, rollout: SamplingConfig, rank: int, world: int
    ) -> list[dict[str, Any]]:
        indices = list(range(rank, len(data.dataset), world))
        config = data.config
        sampling = rollout.model_copy(
            update={
                "group_size": config.samples_per_question,
                "temperature": config.temperature,
                "max_new_tokens": config.max_new_tokens or rollout.max_new_tokens,
            }
        )
        examples = [data.dataset.examples[i] for i in indices]
        if data.questions is None:
            judge = reward_verdicts(self.rewards, examples)
        else:
            questions = [data.questions[i] for i in indices]
            judge = benchmark_verdicts(self.judge, config.benchmark, questions)
        return answer_questions(
            engine,
            data.dataset.prompt_inputs(indices),
            [{"id": example.id} for example in examples],
            sampling,
            judge,
        )

    def close(self) -> None:
        self.judge.close()
