"""The policy update of a step: ``ppo_epochs`` passes over its updates.

Each update accumulates gradients over its micro-batches under one global
denominator (its responses, or tokens for token-mean, summed over processes),
so N processes compute the gradient of one process with the same batch; then
the backend clips and steps. An update that runs out of memory is recut into
micro-batches of half the rows (an explicit size, kept for the rest of the run)
and run again; a NaN/inf gradient skips the update, and too many in a row stop
the run (:class:`~apo.training.failures.NonFiniteTraining`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from apo.algorithms import apo_objective, importance_weights
from apo.batching import MicroBatch, StepBatcher, split_to_count
from apo.config import TrainConfig
from apo.distributed import Backend
from apo.models import sequence_log_probs
from apo.out_of_memory import retry_halving
from apo.training.failures import NonFiniteTraining
from apo.training.step_metrics import UpdateSums

logger = logging.getLogger(__name__)


def global_denominator(
    micro_batches: list[MicroBatch], token_mean: bool, backend: Backend
) -> float:
    """Responses (tokens for token-mean) of this update, summed over processes."""
    local = 0.0
    for micro in micro_batches:
        mask = micro.loss_mask
        local += float(mask.sum() if token_mean else mask.any(dim=1).sum())
    return float(backend.reduce(torch.tensor(local), "sum"))


def recut(micro_batches: list[MicroBatch], size: int, batcher: StepBatcher) -> list[MicroBatch]:
    """The update's micro-batches, halved until none holds more than ``size`` rows
    (the same ones when none does)."""
    updates = [micro_batches]
    batcher.recut(updates, size)
    return updates[0]


def equal_micro_batch_counts(
    updates: list[list[MicroBatch]], backend: Backend, batcher: StepBatcher
) -> None:
    """Token budgets cut each process's rows into its own number of micro-batches;
    every process must run as many forward/backward passes (sharded models gather
    their weights in each), so each update gets (in place) the largest count of any
    process."""
    if backend.processes == 1:
        return
    counts = backend.reduce(torch.tensor([len(m) for m in updates]), "max").tolist()
    for position, count in enumerate(counts):
        updates[position] = split_to_count(updates[position], int(count), batcher.halves)


@dataclass
class PolicyUpdate:
    """Runs a step's updates; ``micro_batch_size`` and ``max_tokens`` say how a step's
    batches are cut (by rows of the size it last fitted, after running out of memory).
    ``announce``: log retries and skipped updates (on the main process)."""

    config: TrainConfig
    policy: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batcher: StepBatcher
    backend: Backend
    announce: bool = True
    fitted: int | None = None  # the rows that fitted, after running out of memory
    nonfinite_in_a_row: int = 0

    @property
    def micro_batch_size(self) -> int:
        return self.fitted or self.config.batch.micro_batch_size

    @property
    def max_tokens(self) -> int | None:
        """The token budget of a micro-batch; none after running out of memory (rows)."""
        return None if self.fitted else self.config.batch.max_tokens_per_micro_batch

    def run(self, updates: list[list[MicroBatch]], step: int) -> UpdateSums:
        """``ppo_epochs`` passes over ``updates``; ``step`` (1-based) for messages."""
        result = UpdateSums()
        token_mean = self.config.algorithm.aggregation == "token-mean"
        self.policy.train()
        for _ in range(self.config.algorithm.ppo_epochs):
            for micro_batches in updates:
                denominator = global_denominator(micro_batches, token_mean, self.backend)
                widest = max(len(m) for m in micro_batches)  # already cut to fit, but
                # after running out of memory earlier in this step
                (ran, sums), _ = retry_halving(
                    lambda size, micro_batches=micro_batches, denominator=denominator: (
                        self._accumulate(recut(micro_batches, size, self.batcher), denominator)
                    ),
                    min(widest, self.fitted or widest),
                    # several processes retry in step only when they agree on failures
                    retry=self.backend.retries_together,
                    on_halve=lambda old, new: self._halved(new, step),
                    advice=lambda size: self._advice(size, step),
                )
                result.add(sums)
                result.micro_batches += len(ran)
                norm = self.backend.clip_and_step(self.config.optim.grad_clip)
                if not math.isfinite(norm):
                    self._skip_nonfinite(step)
                    result.skipped += 1
                    continue
                self.nonfinite_in_a_row = 0
                result.grad_norms.append(norm)
                self.scheduler.step()
        # Freed now, not at the next update's start: the next rollout and log-prob
        # passes need no gradients (a whole model's worth in full fine-tuning).
        self.optimizer.zero_grad(set_to_none=True)
        return result

    def _accumulate(
        self, micro_batches: list[MicroBatch], denominator: float
    ) -> tuple[list[MicroBatch], dict[str, float]]:
        return micro_batches, self.accumulate_gradients(micro_batches, denominator)

    def accumulate_gradients(
        self, micro_batches: list[MicroBatch], denominator: float
    ) -> dict[str, float]:
        """Forward and backward over one update's micro-batches; returns metric sums."""
        self.optimizer.zero_grad(set_to_none=True)
        sums = UpdateSums()
        for metrics in self.backend.accumulate(
            micro_batches, lambda micro: self.forward_backward(micro, denominator)
        ):
            sums.add(metrics)
        return sums.sums

    def forward_backward(self, micro: MicroBatch, denominator: float) -> dict[str, float]:
        """One micro-batch's loss and its backward; returns its metric values."""
        cfg = self.config
        result = sequence_log_probs(
            self.policy,
            micro.batch,
            temperature=cfg.rollout.temperature or 1.0,
            chunk_size=cfg.batch.logprob_chunk_size,
            with_entropy=True,
        )
        old = result.logp.detach() if micro.old_logp is None else micro.old_logp
        weights, mismatch = None, {}
        if cfg.algorithm.importance_sampling != "off":
            weights, mismatch = importance_weights(
                old,
                micro.sampling_logp,
                micro.loss_mask,
                cfg.algorithm.importance_sampling,
                cfg.algorithm.importance_cap,
            )
        loss, metrics = apo_objective(
            result.logp,
            old,
            micro.ref_logp,
            micro.loss_mask,
            micro.advantages,
            micro.kl_weights,
            cfg.algorithm,  # no reference (ref_logp None) only with beta = 0
            max_tokens=cfg.rollout.max_new_tokens,
            denominator=denominator,
            token_weights=weights,
        )
        metrics |= mismatch
        self.backend.backward(loss)
        metrics["entropy/mean"] = result.entropy[micro.batch.response_mask].mean()
        return {key: float(value) for key, value in metrics.items()}

    def _halved(self, size: int, step: int) -> None:
        """Micro-batches of ``size`` rows from now on (rows, even with a token budget)."""
        self.fitted = size
        if self.announce:
            logger.warning(
                "out of memory in the update at step %d: retrying with micro-batches of %d; set "
                "batch.micro_batch_size=%d (and no batch.max_tokens_per_micro_batch) to avoid "
                "the retry",
                step,
                size,
                size,
            )

    def _advice(self, size: int, step: int) -> str:
        reason = (
            "even one sequence per micro-batch"
            if size == 1
            else "no automatic retry with several processes"
        )
        return (
            f"out of memory in the update at step {step} ({reason}). Lower "
            f"batch.micro_batch_size (now {self.micro_batch_size}), rollout.max_new_tokens "
            f"(now {self.config.rollout.max_new_tokens}) or data.max_prompt_length, or turn "
            "on model.gradient_checkpointing / lora.enabled"
        )

    def _skip_nonfinite(self, step: int) -> None:
        """Drop this update's gradient; after too many in a row, stop the run."""
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_a_row += 1
        limit = self.config.training.max_nonfinite_updates
        if self.announce:
            logger.warning(
                "step %d: NaN/inf gradient, update skipped (%d in a row, limit %d)",
                step,
                self.nonfinite_in_a_row,
                limit,
            )
        if self.nonfinite_in_a_row >= limit:
            raise NonFiniteTraining(
                f"{self.nonfinite_in_a_row} updates in a row had a NaN/inf gradient at step "
                f"{step}; the weights are those of the last good update. Lower "
                "optim.lr, check the rewards, or use training.precision=no"
            )
