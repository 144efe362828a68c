"""Rollout engines: prompts (with images) in, G sampled responses per prompt out."""

from apo.rollout.base import (
    ENGINES,
    FinishReason,
    PromptInput,
    Rollout,
    RolloutConfig,
    RolloutEngine,
    SamplingConfig,
    build_engine,
)
from apo.rollout.transformers_engine import TransformersEngine

__all__ = [
    "ENGINES",
    "FinishReason",
    "PromptInput",
    "Rollout",
    "RolloutConfig",
    "RolloutEngine",
    "SamplingConfig",
    "TransformersEngine",
    "build_engine",
]
