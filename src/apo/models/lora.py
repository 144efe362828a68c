"""LoRA adapters through ``peft``."""

from __future__ import annotations

from apo.models.config import DEFAULT_EXCLUDE_MODULES, LoraConfig
from apo.models.config import DEFAULT_TARGET_MODULES as DEFAULT_TARGET_MODULES  # their former home
from apo.models.loading import vision_tower
from apo.models.unwrap import unwrap_model


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
    from peft import PeftModel  # seconds to import: not for runs without LoRA

    return isinstance(unwrap_model(model), PeftModel)
