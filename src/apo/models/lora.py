"""LoRA adapters through ``peft``."""

from __future__ import annotations

from pydantic import Field

from apo.models.loading import vision_tower
from apo.models.unwrap import unwrap_model
from apo.section import Section

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


LoraSettings = LoraConfig  # its former name


def apply_lora(model, settings: LoraConfig):
    """Wrap ``model`` in a ``peft`` model with fresh LoRA adapters (only they train)."""
    from peft import LoraConfig, get_peft_model  # seconds to import: only for LoRA runs

    exclude = settings.exclude_modules
    if exclude == DEFAULT_EXCLUDE_MODULES and vision_tower(model) is None:
        exclude = None  # a text model has no tower to keep out (peft warns that none matched)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        exclude_modules=exclude,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as error:
        raise ValueError(
            f"cannot apply LoRA with target_modules={settings.target_modules!r}: {error}"
        ) from None


def has_adapters(model) -> bool:
    from peft import PeftModel  # seconds to import: not with every config

    return isinstance(unwrap_model(model), PeftModel)
