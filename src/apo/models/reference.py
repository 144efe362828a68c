"""The frozen reference policy of the KL term.

Two ways to have one:

- :class:`AdapterDisabledReference`: with LoRA, the base model *is* the
  reference; peft's ``disable_adapter()`` runs it without a second copy.
- :class:`FrozenReference`: a separate frozen copy, optionally on another
  device or in another dtype.
"""

from __future__ import annotations

import copy
from typing import Protocol

import torch
from torch import Tensor

from apo.models.config import ReferenceKind, resolve_reference_kind
from apo.models.inputs import SequenceBatch
from apo.models.logprobs import DEFAULT_CHUNK_SIZE, sequence_log_probs
from apo.models.lora import has_adapters
from apo.models.unwrap import unwrap_model


class ReferencePolicy(Protocol):
    def log_probs(self, batch: SequenceBatch, *, temperature: float = 1.0) -> Tensor:
        """[B, T] log-probs of the response tokens under the reference (no gradient)."""
        ...


class AdapterDisabledReference:
    """The policy's base model, run with its LoRA adapters switched off."""

    def __init__(self, policy: torch.nn.Module, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if not has_adapters(policy):
            raise ValueError("an adapter-disabled reference needs a LoRA (peft) policy")
        self.policy = policy
        self.chunk_size = chunk_size

    @torch.no_grad()
    def log_probs(self, batch: SequenceBatch, *, temperature: float = 1.0) -> Tensor:
        peft_model = unwrap_model(self.policy)
        with peft_model.disable_adapter():
            return sequence_log_probs(
                peft_model, batch, temperature=temperature, chunk_size=self.chunk_size
            ).logp


class FrozenReference:
    """A frozen copy of the initial policy, on its own device and dtype."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.model = model
        if device is not None or dtype is not None:
            self.model.to(device=device, dtype=dtype)
        self.model.eval()
        self.model.requires_grad_(False)
        self.chunk_size = chunk_size

    @classmethod
    def copy_of(
        cls,
        policy: torch.nn.Module,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> FrozenReference:
        return cls(copy.deepcopy(unwrap_model(policy)), device, dtype, chunk_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def log_probs(self, batch: SequenceBatch, *, temperature: float = 1.0) -> Tensor:
        out_device = batch.response_ids.device
        batch = batch.to(self.device)
        logp = sequence_log_probs(
            self.model, batch, temperature=temperature, chunk_size=self.chunk_size
        ).logp
        return logp.to(out_device)


def build_reference(
    policy: torch.nn.Module,
    kind: ReferenceKind = "auto",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ReferencePolicy | None:
    """The reference for ``policy``; call before training changes it.

    ``auto`` uses the adapter-disabled base when the policy has LoRA adapters
    (no second copy in memory) and a frozen copy otherwise
    (:func:`~apo.models.config.resolve_reference_kind`); ``none`` gives None (train
    without a KL term, beta = 0).
    """
    # has_adapters imports peft (seconds): asked only when the answer decides the kind.
    kind = resolve_reference_kind(kind, lora=kind == "auto" and has_adapters(policy))
    if kind == "none":
        return None
    if kind == "adapter_disabled":
        return AdapterDisabledReference(policy, chunk_size)
    return FrozenReference.copy_of(policy, device, dtype, chunk_size)
