"""Policies: loading HF VLMs and LLMs, LoRA, reference policies, log-probs, the tiny model."""

from apo.models.inputs import (
    SequenceBatch,
    build_sequence_batch,
    collate_prompts,
    encode_prompts,
    pad_responses,
)
from apo.models.loading import (
    LoadedModel,
    ModelConfig,
    freeze_vision_tower,
    load_model,
    resolve_dtype,
    vision_tower,
)
from apo.models.logprobs import TokenLogProbs, sequence_log_probs
from apo.models.lora import LoraConfig, LoraSettings, apply_lora, has_adapters
from apo.models.reference import (
    AdapterDisabledReference,
    FrozenReference,
    ReferencePolicy,
    build_reference,
)
from apo.models.sharding import check_sharding, fsdp_modules, gathered_weights
from apo.models.tiny import TINY_MODEL_NAME, tiny_model_path
from apo.models.unwrap import unwrap_model

__all__ = [
    "TINY_MODEL_NAME",
    "AdapterDisabledReference",
    "FrozenReference",
    "LoadedModel",
    "LoraConfig",
    "LoraSettings",
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
