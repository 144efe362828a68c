"""Rollout engines: prompts (with images) in, G sampled responses per prompt out."""

from apo.rollout.base import (
    DEFAULT_ENGINE,
    ENGINES,
    FinishReason,
    PromptInput,
    Rollout,
    RolloutConfig,
    RolloutEngine,
    SamplingConfig,
    build_engine,
)
from apo.rollout.native_engine import NativeEngine
from apo.rollout.transformers_engine import TransformersEngine

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "FinishReason",
    "NativeEngine",
    "PromptInput",
    "Rollout",
    "RolloutConfig",
    "RolloutEngine",
    "SamplingConfig",
    "TransformersEngine",
    "build_engine",
]
