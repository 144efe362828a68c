"""The benchmarks ``apo eval`` knows, by name."""

from __future__ import annotations

from apo.evaluation.benchmarks import (
    custom,
    mathverse,
    mathvision,
    mathvista,
    mmk12,
    mmmu,
    mmstar,
)
from apo.evaluation.benchmarks.base import Benchmark, Question

BENCHMARKS: dict[str, Benchmark] = {
    module.BENCHMARK.name: module.BENCHMARK
    for module in (mathvista, mathverse, mmk12, mathvision, mmstar, mmmu, custom)
}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


__all__ = ["BENCHMARKS", "Benchmark", "Question", "get_benchmark"]
