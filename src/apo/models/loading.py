"""Load a policy: any Hugging Face image-text-to-text model or causal LM.

Vision-language models load through ``AutoModelForImageTextToText`` with their
``AutoProcessor``; text-only models through ``AutoModelForCausalLM`` with their
tokenizer. Nothing model-specific is hard-coded: the processor and the chat
template of the checkpoint do the model-specific work.

transformers is imported inside the functions that read or load a checkpoint:
its model classes take seconds to load. The settings (:class:`ModelConfig`) live
in :mod:`apo.models.config`, which loads neither.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from apo.models.config import DTypeName, ModelConfig
from apo.models.gguf import forget_gguf_quantization, pretrained_source
from apo.models.packaged import PACKAGED_MODELS, packaged_model_path
from apo.models.tiny import TINY_MODEL_NAME, tiny_model_path


@dataclass
class LoadedModel:
    """A policy with what it needs to turn prompts into model inputs.

    ``processor`` is the multimodal processor of a VLM, or the tokenizer of a
    text-only model; ``tokenizer`` is always the tokenizer.
    """

    model: Any
    processor: Any
    tokenizer: Any
    is_multimodal: bool
    path: str


def resolve_model_path(name_or_path: str) -> str:
    """The built-in tiny model's folder for its name, a packaged real model's
    (``gemma3-270m``, converted on first use) for its; anything else unchanged."""
    if name_or_path == TINY_MODEL_NAME:
        return str(tiny_model_path())
    if name_or_path in PACKAGED_MODELS:
        return str(packaged_model_path(name_or_path))
    return name_or_path


def resolve_dtype(name: DTypeName, device: torch.device | str | None = None) -> torch.dtype:
    if name != "auto":
        return getattr(torch, name)
    on_gpu = (
        torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    )
    if on_gpu and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _load_config(path: str, trust_remote_code: bool):
    from transformers import AutoConfig

    folder, extra = pretrained_source(path)
    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code, **extra)
    except (OSError, ValueError) as error:
        if "trust_remote_code" in str(error):
            raise ValueError(
                f"model {path!r} ships its own code, which apo runs only when you allow it "
                "(model.trust_remote_code: true in your config, or --trust-remote-code); "
                "read that code first"
            ) from None
        if not Path(path).exists() and not os.path.isabs(path) and "/" not in path.strip("/"):
            hint = "it is not a local folder, and no hub id has this form"
        elif not Path(path).exists():
            hint = "it is not a local folder, and the hub cache has no such model (offline?)"
        else:
            hint = "the folder holds no readable config.json"
        raise ValueError(f"cannot load model {path!r}: {hint} ({error})") from None


def is_multimodal_config(config) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def load_model(config: ModelConfig, device: torch.device | str | None = None) -> LoadedModel:
    """Load the policy, its processor and tokenizer, applying the loading options.

    Raises ValueError naming the path when it is missing or not a supported model.
    """
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = resolve_model_path(config.name_or_path)
    hf_config = _load_config(path, config.trust_remote_code)
    multimodal = is_multimodal_config(hf_config)
    if not multimodal and hf_config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(
            f"model {path!r} has type {hf_config.model_type!r}, which is neither an "
            "image-text-to-text model nor a causal language model"
        )
    folder, extra = pretrained_source(path)
    trust = {"trust_remote_code": config.trust_remote_code, **extra}
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(config.dtype, device), **trust}
    if config.attn_implementation is not None:
        kwargs["attn_implementation"] = config.attn_implementation
    model_class = AutoModelForImageTextToText if multimodal else AutoModelForCausalLM
    try:
        model = model_class.from_pretrained(folder, **kwargs)
    except OSError as error:
        raise ValueError(f"cannot load the weights of model {path!r}: {error}") from None
    if extra:
        forget_gguf_quantization(model)
    if multimodal:
        processor = AutoProcessor.from_pretrained(folder, **trust)
        tokenizer = processor.tokenizer
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder, **trust)
        processor = tokenizer
    if tokenizer.pad_token is None:
        # Generation and batching need a pad token; EOS is the usual stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        model.to(device)
    if config.gradient_checkpointing:
        enable_activation_checkpointing(model)
    if config.freeze_vision_tower:
        freeze_vision_tower(model)
    return LoadedModel(
        model=model, processor=processor, tokenizer=tokenizer, is_multimodal=multimodal, path=path
    )


def enable_activation_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in the backward pass (non-reentrant)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


def vision_tower(model) -> torch.nn.Module | None:
    """The image encoder of a VLM (``visual``, ``vision_tower``, ...), or None."""
    get_encoder = getattr(model, "get_encoder", None)
    if get_encoder is None:
        return None
    try:
        tower = get_encoder(modality="image")
    except (TypeError, ValueError, AttributeError):
        return None
    if tower is model or tower is getattr(model, "base_model", None):
        return None  # transformers falls back to the model itself when there is none
    return tower


def freeze_vision_tower(model) -> int:
    """Stop gradients to the vision encoder; returns the number of parameters frozen."""
    tower = vision_tower(model)
    if tower is None:
        raise ValueError("freeze_vision_tower is set, but this model has no vision encoder")
    frozen = 0
    for parameter in tower.parameters():
        parameter.requires_grad_(False)
        frozen += parameter.numel()
    return frozen
