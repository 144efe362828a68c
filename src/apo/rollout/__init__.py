"""Rollout engines: prompts (with images) in, G sampled responses per prompt out."""

from apo.rollout.base import FinishReason, PromptInput, Rollout, RolloutEngine, SamplingConfig
from apo.rollout.transformers_engine import TransformersEngine

__all__ = [
    "FinishReason",
    "PromptInput",
    "Rollout",
    "RolloutEngine",
    "SamplingConfig",
    "TransformersEngine",
]
