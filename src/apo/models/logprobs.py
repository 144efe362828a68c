"""Per-token log-probs and entropy of response tokens, without a [B, L, V] float32 tensor.

The model runs once to its last hidden state (``logits_to_keep=1`` so it does
not build full logits itself; a batch whose rows share prompts runs each prompt
once, apo.models.prefix); the output head is then applied to the response
positions in chunks of ``chunk_size`` tokens. Under autograd each chunk is
checkpointed, so the backward pass recomputes the chunk's logits instead of
keeping them: peak logits memory is chunk_size x vocab x 4 bytes, whatever the
batch and sequence length.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from apo.models.inputs import SequenceBatch
from apo.models.prefix import decoder_of, shared_prompt_hidden, shared_prompt_unsupported
from apo.models.unwrap import unwrap_model

DEFAULT_CHUNK_SIZE = 1024


@dataclass
class TokenLogProbs:
    """``logp`` [B, T] (float32, 0 on padding) and detached ``entropy`` [B, T] or None."""

    logp: Tensor
    entropy: Tensor | None


def _head_logits(head: torch.nn.Module, hidden: Tensor) -> Tensor:
    """``head(hidden)``, in the head's dtype: mixed precision returns the model's
    outputs in float32, and the head runs after the model, outside its autocast.

    A linear head is applied as a function, without its module hooks: FSDP2 takes
    a sharded head's backward hook for the end of its group's backward and reduces
    the group's gradients there, before the tied input embedding's share arrives.
    """
    hidden = hidden.to(next(head.parameters()).dtype)
    # nn.Linear's own forward only (a quantised linear layer overrides it)
    if isinstance(head, torch.nn.Linear) and type(head).forward is torch.nn.Linear.forward:
        return torch.nn.functional.linear(hidden, head.weight, head.bias)
    return head(hidden)


def _token_stats(
    hidden: Tensor, targets: Tensor, head: torch.nn.Module, temperature: float, with_entropy: bool
) -> tuple[Tensor, Tensor]:
    logits = _head_logits(head, hidden).float()
    if temperature != 1.0:
        logits = logits / temperature
    log_normaliser = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets[:, None]).squeeze(-1) - log_normaliser
    if with_entropy:
        # H = log Z - sum_v p_v * logit_v
        entropy = log_normaliser - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)
    else:
        entropy = torch.zeros_like(logp)
    return logp, entropy


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(decoder_of(model).forward).parameters


def last_hidden_state(model: torch.nn.Module, inputs: dict[str, Tensor]) -> Tensor:
    """[B, L, H] final (normalised) hidden states: what the output head reads."""
    extra = {"logits_to_keep": 1} if _accepts_logits_to_keep(model) else {}
    outputs = model(**inputs, output_hidden_states=True, use_cache=False, **extra)
    return outputs.hidden_states[-1]


def sequence_log_probs(
    model: torch.nn.Module,
    batch: SequenceBatch,
    *,
    temperature: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    with_entropy: bool = False,
) -> TokenLogProbs:
    """log pi(y_t | x, y_<t) of every response token, and optionally the entropy.

    Args:
        model: the policy (possibly wrapped by DDP / peft); called with ``batch.inputs``.
        batch: prompts + responses (:func:`apo.models.inputs.build_sequence_batch`).
        temperature: the sampling temperature; logits are divided by it so the
            log-probs are those of the distribution the responses were drawn from.
        chunk_size: response tokens per output-head chunk.
        with_entropy: also return the per-token entropy (detached).

    Returns:
        :class:`TokenLogProbs` with [B, T] tensors, zero on padding.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if batch.distinct_prompts is not None and shared_prompt_unsupported(model) is None:
        response_hidden = shared_prompt_hidden(model, batch)
    else:
        hidden = last_hidden_state(model, batch.inputs)
        start, width = batch.prompt_length, batch.response_ids.shape[1]
        # The hidden state at position i predicts token i + 1.
        response_hidden = hidden[:, start - 1 : start - 1 + width]
    mask = batch.response_mask
    selected_hidden = response_hidden[mask]
    selected_targets = batch.response_ids[mask]
    head = unwrap_model(model).get_output_embeddings()

    logp_parts, entropy_parts = [], []
    for begin in range(0, selected_targets.shape[0], chunk_size):
        chunk = (
            selected_hidden[begin : begin + chunk_size],
            selected_targets[begin : begin + chunk_size],
            head,
            temperature,
            with_entropy,
        )
        if torch.is_grad_enabled():
            logp, entropy = checkpoint(_token_stats, *chunk, use_reentrant=False)
        else:
            logp, entropy = _token_stats(*chunk)
        logp_parts.append(logp)
        entropy_parts.append(entropy.detach())

    logp = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    entropy = torch.zeros_like(logp) if with_entropy else None
    if logp_parts:
        logp = logp.masked_scatter(mask, torch.cat(logp_parts))
        if entropy is not None:
            entropy = entropy.masked_scatter(mask, torch.cat(entropy_parts))
    return TokenLogProbs(logp=logp, entropy=entropy)
