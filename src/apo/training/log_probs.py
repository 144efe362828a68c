"""The no-grad log-prob passes of a step: reference, and old when off-policy.

With one update per rollout (a single pass over a single mini-batch) the policy
that sampled the responses is the one being updated, so the old log-probs
equal the current ones: that extra forward pass is skipped. The passes run over
``batch.logprob_batch_size`` sequences at a time, cut across an update's
micro-batches (None: over the micro-batches themselves), halved for the rest of
the run after running out of memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from apo.batching import MicroBatch, StepBatcher
from apo.config import TrainConfig
from apo.distributed import Backend
from apo.models import ReferencePolicy, SequenceBatch, sequence_log_probs
from apo.out_of_memory import retry_halving

logger = logging.getLogger(__name__)


@dataclass
class LogProbPasses:
    """Fills ``ref_logp`` / ``old_logp`` of a step's micro-batches (``announce``: log
    the retries, on the main process)."""

    config: TrainConfig
    policy: nn.Module
    reference: ReferencePolicy | None
    batcher: StepBatcher
    backend: Backend
    announce: bool = True

    def __post_init__(self) -> None:
        batch = self.config.batch
        self.batch_size = batch.logprob_batch_size  # halved after running out of memory
        self.off_policy = self.config.off_policy
        self.with_reference = self.reference is not None and self.config.algorithm.beta > 0

    @torch.no_grad()
    def fill(self, updates: list[list[MicroBatch]], step: int) -> None:
        """Each update's reference (and old) log-probs; ``step`` (1-based) for messages."""
        if not (self.off_policy or self.with_reference):
            return
        for micro_batches in updates:
            rows = sum(len(m) for m in micro_batches)
            widest = max(len(m) for m in micro_batches)
            first = min(self.batch_size, rows) if self.batch_size else widest
            retry_halving(
                # batches as wide as the widest micro-batch: the micro-batches themselves
                lambda size, micro_batches=micro_batches, widest=widest: self.backend.agreed(
                    lambda: self._fill(micro_batches, None if size == widest else size)
                ),
                first,
                retry=self.backend.retries_together,
                on_halve=lambda old, new: self._halved(new, step),
                advice=lambda size: (
                    f"out of memory in the log-prob pass at step {step}. Lower "
                    f"batch.logprob_batch_size (now {self.batch_size}) or "
                    "batch.logprob_chunk_size, or rollout.max_new_tokens"
                ),
            )

    def _halved(self, size: int, step: int) -> None:
        self.batch_size = size  # for the rest of the run too
        if self.announce:
            logger.warning(
                "out of memory in the log-prob pass at step %d: retrying with batches of "
                "%d; set batch.logprob_batch_size=%d to avoid the retry",
                step,
                size,
                size,
            )

    def _log_probs(self, batch: SequenceBatch) -> dict[str, Tensor]:
        temperature = self.config.rollout.temperature or 1.0
        values = {}
        if self.with_reference:
            values["ref_logp"] = self.reference.log_probs(batch, temperature=temperature)
        if self.off_policy:
            values["old_logp"] = sequence_log_probs(
                self.policy,
                batch,
                temperature=temperature,
                chunk_size=self.config.batch.logprob_chunk_size,
            ).logp
        return values

    def _fill(self, micro_batches: list[MicroBatch], size: int | None) -> None:
        """Set ``ref_logp`` / ``old_logp`` of one update's micro-batches from forward
        passes over ``size`` rows at a time (None: over the micro-batches themselves)."""
        if size is None:
            for micro in micro_batches:
                for name, values in self._log_probs(micro.batch).items():
                    setattr(micro, name, values)
            return
        device = self.backend.device
        for micro in micro_batches:
            width = micro.batch.response_ids.shape[1]
            micro.ref_logp = (
                torch.zeros(len(micro), width, device=device) if self.with_reference else None
            )
            micro.old_logp = (
                torch.zeros(len(micro), width, device=device) if self.off_policy else None
            )
        rows = [
            (micro, row, response)
            for micro in micro_batches
            for row, response in enumerate(micro.responses())
        ]
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            batch = self.batcher.sequence_batch(
                [m.prompts[r] for m, r, _ in chunk], [response for _, _, response in chunk]
            )
            for name, values in self._log_probs(batch).items():
                for position, (m, r, response) in enumerate(chunk):
                    getattr(m, name)[r, : len(response)] = values[position, : len(response)]
