"""LoRA adapters through ``peft``."""

from __future__ import annotations

from apo.models.config import DEFAULT_EXCLUDE_MODULES, LoraConfig
from apo.models.loading import vision_tower
from apo.models.unwrap import unwrap_model


def peft_lora_config(settings: LoraConfig, has_vision_tower: bool):
    """``settings`` as a ``peft`` ``LoraConfig`` (also what benchmarks/step.py hands
    TRL, so both frameworks train the same adapters)."""
    from peft import LoraConfig as PeftLoraConfig  # seconds to import: only for LoRA runs

    exclude = settings.exclude_modules
    if exclude == DEFAULT_EXCLUDE_MODULES and not has_vision_tower:
        exclude = None  # a text model has no tower to keep out (peft warns that none matched)
    return PeftLoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        exclude_modules=exclude,
        bias="none",
        task_type="CAUSAL_LM",
    )


def apply_lora(model, settings: LoraConfig):
    """Wrap ``model`` in a ``peft`` model with fresh LoRA adapters (only they train)."""
    from peft import get_peft_model

    try:
        return get_peft_model(model, peft_lora_config(settings, vision_tower(model) is not None))
    except ValueError as error:
        raise ValueError(
            f"cannot apply LoRA with target_modules={settings.target_modules!r}: {error}"
        ) from None


def has_adapters(model) -> bool:
    from peft import PeftModel  # seconds to import: not for runs without LoRA

    return isinstance(unwrap_model(model), PeftModel)
