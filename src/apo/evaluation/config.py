"""The settings of the trainer's periodic evaluations (``eval``).

Light (pydantic only): the config imports this module, and reading settings never
loads a benchmark's readers, a model or an engine.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from apo.data.config import DataConfig
from apo.section import Section

BENCHMARK_NAMES = ("mathvista", "mathverse", "mmk12", "mathvision", "mmstar", "mmmu", "custom")
"""The benchmarks of :mod:`apo.evaluation.benchmarks` (``BENCHMARKS``), whose modules load
pyarrow and PIL: a config is checked against these names without them."""


class EvalSetConfig(Section):
    """One evaluation set and how it is decoded."""

    data: DataConfig = Field(description="The questions (any training data format).")
    benchmark: str | None = Field(
        None,
        description=(
            f"A benchmark of apo eval ({', '.join(BENCHMARK_NAMES)}): data.path holds its "
            "files, its rule judges the answers. None: the data is in the training format and "
            "judged by the reward components."
        ),
    )
    split: str | None = Field(None, description="The benchmark's split; None: its default.")
    temperature: float = Field(0.0, ge=0, description="0: greedy decoding.")
    samples_per_question: int = Field(
        1, ge=1, description="Responses per question; accuracy is their mean (mean@k)."
    )
    max_new_tokens: int | None = Field(None, ge=1, description="None: rollout.max_new_tokens.")

    @field_validator("benchmark")
    @classmethod
    def _known_benchmark(cls, value: str | None) -> str | None:
        if value is not None and value not in BENCHMARK_NAMES:
            raise ValueError(
                f"unknown benchmark {value!r}; choose from {', '.join(BENCHMARK_NAMES)}"
            )
        return value


class EvalConfig(Section):
    """Periodic evaluation on held-out questions."""

    every: int = Field(0, ge=0, description="Evaluate every N steps (and at the end); 0: never.")
    at_start: bool = Field(False, description="Also evaluate before the first step.")
    datasets: dict[str, EvalSetConfig] = Field(
        default_factory=dict,
        description="Named evaluation sets; metrics are logged as eval/<name>/<metric>.",
    )
