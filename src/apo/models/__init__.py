"""Policies: loading HF VLMs and LLMs, LoRA, reference policies, log-probs, the tiny model.

The names load with their module on first use (:mod:`apo.lazy`): the settings
(``ModelConfig``, ``LoraConfig``) never import torch or transformers.
"""

from typing import TYPE_CHECKING

from apo.lazy import lazy_exports

if TYPE_CHECKING:
    from apo.models.config import LoraConfig, ModelConfig
    from apo.models.inputs import (
        SequenceBatch,
        build_sequence_batch,
        collate_prompts,
        encode_prompts,
        pad_responses,
    )
    from apo.models.loading import (
        LoadedModel,
        freeze_vision_tower,
        load_model,
        resolve_dtype,
        vision_tower,
    )
    from apo.models.logprobs import TokenLogProbs, sequence_log_probs
    from apo.models.lora import apply_lora, has_adapters
    from apo.models.reference import (
        AdapterDisabledReference,
        FrozenReference,
        ReferencePolicy,
        build_reference,
    )
    from apo.models.sharding import check_sharding, fsdp_modules, gathered_weights
    from apo.models.tiny import TINY_MODEL_NAME, tiny_model_path
    from apo.models.unwrap import unwrap_model

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "apo.models.config": ["LoraConfig", "ModelConfig"],
        "apo.models.inputs": [
            "SequenceBatch",
            "build_sequence_batch",
            "collate_prompts",
            "encode_prompts",
            "pad_responses",
        ],
        "apo.models.loading": [
            "LoadedModel",
            "freeze_vision_tower",
            "load_model",
            "resolve_dtype",
            "vision_tower",
        ],
        "apo.models.logprobs": ["TokenLogProbs", "sequence_log_probs"],
        "apo.models.lora": ["apply_lora", "has_adapters"],
        "apo.models.reference": [
            "AdapterDisabledReference",
            "FrozenReference",
            "ReferencePolicy",
            "build_reference",
        ],
        "apo.models.sharding": ["check_sharding", "fsdp_modules", "gathered_weights"],
        "apo.models.tiny": ["TINY_MODEL_NAME", "tiny_model_path"],
        "apo.models.unwrap": ["unwrap_model"],
    },
)

__all__ = [
    "TINY_MODEL_NAME",
    "AdapterDisabledReference",
    "FrozenReference",
    "LoadedModel",
    "LoraConfig",
    "ModelConfig",
    "ReferencePolicy",
    "SequenceBatch",
    "TokenLogProbs",
    "apply_lora",
    "build_reference",
    "build_sequence_batch",
    "check_sharding",
    "collate_prompts",
    "encode_prompts",
    "freeze_vision_tower",
    "fsdp_modules",
    "gathered_weights",
    "has_adapters",
    "load_model",
    "pad_responses",
    "resolve_dtype",
    "sequence_log_probs",
    "tiny_model_path",
    "unwrap_model",
    "vision_tower",
]
