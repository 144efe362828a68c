"""Judging benchmark answers in worker processes, with a hard timeout per answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout

from pebble import ProcessPool

from apo.evaluation.benchmarks import Benchmark, Question, get_benchmark
from apo.rewards import GroundTruthError
from apo.rewards.pool import start_worker_pool


def _judge(judge, question: Question, prediction: str) -> tuple[bool, bool]:
    """(correct, ground truth unreadable), in a worker process."""
    try:
        return judge(question, prediction), False
    except GroundTruthError:
        return False, True


class Judge:
    """Judges answers in worker processes with a hard timeout: math_verify can hang on
    adversarial text, and a hung evaluation would lose the night. The workers start
    with the first answer to judge."""

    def __init__(self, timeout: float = 10.0, workers: int = 1) -> None:
        self.timeout = timeout
        self.workers = workers
        self.pool: ProcessPool | None = None

    def __call__(
        self, benchmark: Benchmark | str, items: Sequence[tuple[Question, str]]
    ) -> list[dict[str, bool]]:
        """One verdict per (question, extracted answer): ``correct``, and
        ``ground_truth_error`` or ``judge_timeout`` saying why an answer counts wrong."""
        if isinstance(benchmark, str):
            benchmark = get_benchmark(benchmark)
        if self.pool is None:
            self.pool = start_worker_pool(self.workers)
        futures = [
            self.pool.schedule(
                _judge,
                # the judge goes by reference (module and name), the question without images
                args=(benchmark.judge, dataclasses.replace(q, images=[]), prediction),
                timeout=self.timeout,
            )
            for q, prediction in items
        ]
        verdicts = []
        for future in futures:
            try:
                correct, unreadable = future.result()
                verdicts.append({"correct": correct, "ground_truth_error": unreadable})
            except FutureTimeout:
                verdicts.append({"correct": False, "judge_timeout": True})
        return verdicts

    def close(self) -> None:
        if self.pool is not None:
            self.pool.stop()
            self.pool.join()
            self.pool = None
