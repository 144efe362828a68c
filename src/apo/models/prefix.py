"""Each prompt run once for all its responses: a KV-cache prefill, then the responses.

A GRPO micro-batch holds G responses to each of its prompts, and the prompt
(its image tokens included) is usually most of each row: run row by row, the
model computes every prompt G times. Here the distinct prompts run once, up to
their second-to-last token, with a KV cache; the cache is repeated for the
rows (``Cache.batch_select_indices``, differentiable: gradients of the rows
flow back into the one prompt pass); then each row runs its last prompt token
followed by its response, attending to its prompt through the cache. The
hidden states of that second pass are, position by position, those of the
full rows at ``[P - 1, P - 1 + T)``: the states that predict the response
tokens. Same maths as the full pass (tested to float rounding); the work of
the prompts is divided by G.

The rollout engine uses the same prefill to decode (apo.rollout.native_engine).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor
from transformers import DynamicCache

from apo.models.inputs import SequenceBatch
from apo.models.unwrap import unwrap_model


def supports_cached_decoding(model: Any) -> str | None:
    """``None`` if ``model`` (unwrapped) can run a prompt into a ``DynamicCache`` and
    continue from it with explicit positions, else the reason it cannot."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models are decoded by generate"
    parameters = inspect.signature(model.forward).parameters
    missing = [name for name in ("cache", "logits_to_keep") if name not in parameters]
    if missing:
        return f"its forward takes no {', '.join(missing)}"
    if not hasattr(model, "_prepare_position_ids_for_generation"):
        return "it has no generation position ids"
    return None


def decoder_of(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside DDP / accelerate / peft wrappers (a peft model's
    adapters live in its base model's layers: calling the base model is calling the
    policy)."""
    inner = unwrap_model(model)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def prefill(
    model: Any, decoder: Any, inputs: dict[str, Tensor], cache: DynamicCache, **kwargs: Any
) -> tuple[Any, Tensor]:
    """Run the prompts ``inputs`` (left-padded) through ``model`` into ``cache``.

    ``decoder`` is the unwrapped model (:func:`decoder_of`), for its position ids.
    Returns the model's output and [B, 1] the position of each row's next token:
    its last prompt position + 1, plus the offset a model with 3D (image)
    positions keeps for the text after the prompt (Qwen2.5-VL's ``rope_deltas``).
    """
    position_ids = decoder._prepare_position_ids_for_generation(inputs["input_ids"], dict(inputs))
    output = model(**inputs, position_ids=position_ids, cache=cache, use_cache=True, **kwargs)
    text_positions = position_ids[0] if position_ids.dim() == 3 else position_ids
    next_position = text_positions[:, -1:] + 1
    deltas = getattr(getattr(decoder, "model", None), "rope_deltas", None)
    if isinstance(deltas, Tensor):
        next_position = next_position + deltas.to(next_position.device)
    return output, next_position


def _checkpointing(decoder: torch.nn.Module) -> bool:
    """Whether any layer of ``decoder`` recomputes its activations in the backward."""
    if hasattr(type(decoder), "is_activation_checkpointing"):  # transformers >= 5.2x
        return decoder.is_activation_checkpointing
    return bool(getattr(decoder, "is_gradient_checkpointing", False))


def shared_prompt_unsupported(model: torch.nn.Module) -> str | None:
    """``None`` if :func:`shared_prompt_hidden` can run ``model`` now, else why not."""
    decoder = decoder_of(model)
    unsupported = supports_cached_decoding(decoder)
    if unsupported is not None:
        return unsupported
    if torch.is_grad_enabled() and decoder.training and _checkpointing(decoder):
        # transformers drops the cache of a checkpointed layer (its recompute would
        # write it twice): the responses would not see their prompt.
        return "gradient checkpointing drops the KV cache under autograd"
    return None


def shared_prompt_hidden(model: torch.nn.Module, batch: SequenceBatch) -> Tensor:
    """[B, T, H] final hidden states at ``[P - 1, P - 1 + T)`` of each row, from one pass
    over the distinct prompts (``batch.distinct_prompts``) and one over the responses.

    The prompts run without their last token, which starts each row's second pass,
    so the second pass's state t predicts response token t.
    """
    if batch.distinct_prompts is None or batch.prompt_index is None:
        raise ValueError("this batch has no distinct prompts to share")
    decoder = decoder_of(model)
    prompts, index = batch.distinct_prompts, batch.prompt_index
    ids = prompts["input_ids"]
    head = {
        key: value[:, :-1] if value.dim() == 2 and value.shape == ids.shape else value
        for key, value in prompts.items()
    }
    cache = DynamicCache(config=decoder.config)
    _, next_position = prefill(model, decoder, head, cache, logits_to_keep=1)
    cache.batch_select_indices(index)

    width = batch.response_ids.shape[1]
    mask = prompts["attention_mask"][index]
    tokens = torch.cat([ids[index, -1:], batch.response_ids[:, :-1]], dim=1)
    attention_mask = torch.cat([mask, batch.response_mask[:, :-1].to(mask.dtype)], dim=1)
    positions = next_position[index] + torch.arange(width, device=ids.device)
    output = model(
        input_ids=tokens,
        attention_mask=attention_mask,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        output_hidden_states=True,
        logits_to_keep=1,
    )
    return output.hidden_states[-1]
