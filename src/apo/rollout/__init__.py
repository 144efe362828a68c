"""Rollout engines: prompts (with images) in, G sampled responses per prompt out.

The names load with their module on first use (:mod:`apo.lazy`): the settings
and the interface (:mod:`apo.rollout.base`) never import torch or transformers;
the engines do.
"""

from typing import TYPE_CHECKING

from apo.lazy import lazy_exports

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "apo.rollout.base": [
            "DEFAULT_ENGINE",
            "ENGINES",
            "FinishReason",
            "PromptInput",
            "Rollout",
            "RolloutConfig",
            "RolloutEngine",
            "SamplingConfig",
            "build_engine",
        ],
        "apo.rollout.native_engine": ["NativeEngine"],
        "apo.rollout.transformers_engine": ["TransformersEngine"],
    },
)

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
