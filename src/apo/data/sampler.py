"""Deterministic, resumable order over a dataset: epochs of seeded permutations."""

from __future__ import annotations

from typing import Any

import torch


class ResumableSampler:
    """Yields batches of example indices; its position can be saved and restored.

    Epoch e visits ``randperm(n, seed + e)`` (or 0..n-1 without shuffling) in
    batches of ``batch_size``; the last incomplete batch of an epoch is dropped
    so every batch is full. Restoring a state continues exactly where it left off.
    """

    def __init__(
        self, num_examples: int, batch_size: int, seed: int = 0, shuffle: bool = True
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_examples < batch_size:
            raise ValueError(
                f"the dataset has {num_examples} usable examples, "
                f"fewer than one batch of {batch_size}"
            )
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0  # index of the next batch within the epoch
        self._order = self._epoch_order(0)

    @property
    def batches_per_epoch(self) -> int:
        return self.num_examples // self.batch_size

    def _epoch_order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_examples))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_examples, generator=generator).tolist()

    def next_batch(self) -> list[int]:
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
            self._order = self._epoch_order(self.epoch)
        start = self.position * self.batch_size
        self.position += 1
        return self._order[start : start + self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_examples": self.num_examples,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("num_examples", "batch_size", "seed", "shuffle"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"cannot resume the data order: saved {key}={state[key]!r}, "
                    f"now {getattr(self, key)!r} (same data and settings are needed)"
                )
        self.epoch = state["epoch"]
        self.position = state["position"]
        self._order = self._epoch_order(self.epoch)
