"""A step's responses cut into updates, then into micro-batches ready for the model.

Each prompt is processed once per step (its images too): its G responses, and
every pass over them, share that encoding. A micro-batch keeps its prompts, so
it can be cut again (after running out of memory) or re-batched for the
log-prob passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from apo.data import PromptInput
from apo.models import SequenceBatch, build_sequence_batch, collate_prompts, encode_prompts
from apo.rollout import Rollout


@dataclass
class MicroBatch:
    """A slice of the rollout ready for the model, with its per-response tensors."""

    prompts: list[PromptInput]  # kept to rebuild halves after an out-of-memory error
    batch: SequenceBatch
    loss_mask: Tensor  # [B, T]: response tokens that enter the loss
    advantages: Tensor  # [B]
    kl_weights: Tensor  # [B]
    ref_logp: Tensor | None = None
    old_logp: Tensor | None = None
    sampling_logp: Tensor | None = None  # [B, T]: the engine's (Rollout.sampling_logps)

    def __len__(self) -> int:
        return len(self.prompts)

    def responses(self, rows: slice = slice(None)) -> list[list[int]]:
        """The response token ids of these rows, without padding."""
        lengths = self.batch.response_mask[rows].sum(dim=1).tolist()
        ids = self.batch.response_ids[rows].tolist()
        return [row[:length] for row, length in zip(ids, lengths, strict=True)]


class StepBatcher:
    """Builds the sequence batches of one step; :meth:`new_step` forgets the encodings."""

    def __init__(
        self,
        processor: Any,
        pad_id: int,
        is_multimodal: bool,
        device: torch.device,
        share_prompts: bool = False,
    ) -> None:
        self.processor = processor
        self.pad_id = pad_id
        self.is_multimodal = is_multimodal
        self.device = device
        self.share_prompts = share_prompts
        self._encodings: dict[int, tuple[PromptInput, dict[str, Tensor]]] = {}

    def new_step(self) -> None:
        self._encodings = {}

    def updates(
        self,
        prompts: list[PromptInput],
        rollouts: list[Rollout],
        advantages: Tensor,
        kl_weights: Tensor,
        keep: Tensor,
        num_updates: int,
        size: int,
        max_tokens: int | None = None,
    ) -> list[list[MicroBatch]]:
        """The responses cut into ``num_updates`` updates of micro-batches: of ``size``
        rows in rollout order, or with ``max_tokens`` by :func:`token_budget_cuts`.

        Responses left out of the update (``keep`` False) stay in their
        micro-batch with an empty loss mask: every process then runs the same
        number of forward/backward passes, which distributed training requires.
        """
        per_update = len(rollouts) // num_updates
        updates = []
        for first in range(0, len(rollouts), per_update):
            update_rows = list(range(first, first + per_update))
            if max_tokens is None:
                cuts = [update_rows[i : i + size] for i in range(0, per_update, size)]
            else:
                lengths = [
                    (self.prompt_length(prompts[rollouts[i].prompt_index]), rollouts[i].length)
                    for i in update_rows
                ]
                groups = (
                    [id(prompts[rollouts[i].prompt_index]) for i in update_rows]
                    if self.share_prompts
                    else None
                )
                cuts = [
                    [update_rows[i] for i in cut]
                    for cut in token_budget_cuts(lengths, max_tokens, groups)
                ]
            micro_batches = []
            for rows in cuts:
                rows_prompts = [prompts[rollouts[i].prompt_index] for i in rows]
                batch = self.sequence_batch(rows_prompts, [rollouts[i].response_ids for i in rows])
                micro_batches.append(
                    MicroBatch(
                        prompts=rows_prompts,
                        batch=batch,
                        loss_mask=batch.response_mask & keep[rows].to(self.device)[:, None],
                        advantages=advantages[rows].to(self.device),
                        kl_weights=kl_weights[rows].to(self.device),
                        sampling_logp=self._sampling_logps(
                            [rollouts[i] for i in rows], batch.response_ids.shape[1]
                        ),
                    )
                )
            updates.append(micro_batches)
        return updates

    def _sampling_logps(self, rollouts: list[Rollout], width: int) -> Tensor | None:
        """The rollouts' sampling log-probs as a [B, width] tensor (0 past each
        response's end), or None when the engine recorded none."""
        if rollouts[0].sampling_logps is None:
            return None
        rows = torch.zeros(len(rollouts), width)
        for row, rollout in enumerate(rollouts):
            rows[row, : len(rollout.sampling_logps)] = torch.tensor(rollout.sampling_logps)
        return rows.to(self.device)

    def sequence_batch(self, prompts: list[PromptInput], responses: list[Any]) -> SequenceBatch:
        """Prompts and their responses, padded into one batch on the device; with
        ``share_prompts``, rows that answer the same prompt share its encoding
        (``distinct_prompts``: apo.models.prefix then runs it once)."""
        inputs = collate_prompts([self._encoded(prompt) for prompt in prompts], self.pad_id)
        batch = build_sequence_batch(inputs, responses, self.pad_id)
        if self.share_prompts:
            distinct = {id(prompt): self._encoded(prompt) for prompt in prompts}
            if len(distinct) < len(prompts):
                position = {key: i for i, key in enumerate(distinct)}
                # The same prompts, so the same width: each row's prompt is its distinct one.
                batch.distinct_prompts = collate_prompts(list(distinct.values()), self.pad_id)
                batch.prompt_index = torch.tensor([position[id(prompt)] for prompt in prompts])
        return batch.to(self.device)

    def prompt_length(self, prompt: PromptInput) -> int:
        """The prompt's length in tokens (its image tokens included)."""
        return self._encoded(prompt)["input_ids"].shape[1]

    def _encoded(self, prompt: PromptInput) -> dict[str, Tensor]:
        """A prompt's processor output (its images processed), once per step."""
        key = id(prompt)
        if key not in self._encodings:
            encoded = encode_prompts(
                self.processor, [prompt.text], [prompt.images], self.is_multimodal
            )
            self._encodings[key] = (prompt, encoded)  # the prompt keeps its id taken
        return self._encodings[key][1]

    def recut(self, updates: list[list[MicroBatch]], size: int) -> None:
        """Cut every update's micro-batches (in place) until none holds more than ``size``."""
        for position, micro_batches in enumerate(updates):
            while max(len(m) for m in micro_batches) > size:
                halved = [self.halves(m) if len(m) > size else [m] for m in micro_batches]
                micro_batches = [part for parts in halved for part in parts]
            updates[position] = micro_batches

    def halves(self, micro: MicroBatch) -> list[MicroBatch]:
        """The micro-batch as two, each padded only to its own longest response.

        Losses are sums over tokens divided by the update's denominator, so two
        halves accumulate the same gradient as the whole (up to float rounding).
        """
        half = len(micro) // 2
        parts = []
        for rows in (slice(0, half), slice(half, len(micro))):
            batch = self.sequence_batch(micro.prompts[rows], micro.responses(rows))
            width = batch.response_ids.shape[1]

            def cut(tensor: Tensor | None, rows=rows, width=width) -> Tensor | None:
                return None if tensor is None else tensor[rows, :width]

            parts.append(
                MicroBatch(
                    prompts=micro.prompts[rows],
                    batch=batch,
                    loss_mask=cut(micro.loss_mask),
                    advantages=micro.advantages[rows],
                    kl_weights=micro.kl_weights[rows],
                    ref_logp=cut(micro.ref_logp),
                    old_logp=cut(micro.old_logp),
                    sampling_logp=cut(micro.sampling_logp),
                )
            )
        return parts


def token_budget_cuts(
    lengths: list[tuple[int, int]], max_tokens: int, groups: list[int] | None = None
) -> list[list[int]]:
    """Row indices cut into micro-batches of at most ``max_tokens`` padded tokens.

    ``lengths`` holds each row's (prompt, response) length. Rows are sorted by
    total length (stable), then taken in that order while
    ``rows x (longest prompt + longest response) <= max_tokens``; a row longer
    than the budget goes alone. Sorting keeps rows of similar length together,
    so little of a micro-batch is padding (verl's dynamic batch size, Megatron's
    sequence packing by length).

    With ``groups`` (each row's prompt, when rows share their prompt's pass:
    ``batch.share_prompts``) a prompt counts once: rows are sorted by prompt
    length, prompt, then response length, so a prompt's rows stay together, and a
    micro-batch costs ``prompts x longest prompt + rows x longest response``.
    """
    if groups is None:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i][0] + lengths[i][1])
    else:
        first = {group: position for position, group in reversed(list(enumerate(groups)))}
        order = sorted(
            range(len(lengths)), key=lambda i: (lengths[i][0], first[groups[i]], lengths[i][1])
        )
    cuts: list[list[int]] = []
    current: list[int] = []
    current_groups: set[int] = set()
    longest_prompt = longest_response = 0
    for index in order:
        prompt, response = lengths[index]
        rows = len(current) + 1
        prompt_rows = rows if groups is None else len(current_groups | {groups[index]})
        grown = prompt_rows * max(longest_prompt, prompt) + rows * max(longest_response, response)
        if current and grown > max_tokens:
            cuts.append(current)
            current, current_groups, longest_prompt, longest_response = [], set(), 0, 0
        current.append(index)
        if groups is not None:
            current_groups.add(groups[index])
        longest_prompt = max(longest_prompt, prompt)
        longest_response = max(longest_response, response)
    if current:
        cuts.append(current)
    return cuts


def split_to_count(
    micro_batches: list[MicroBatch], count: int, halves: Callable[[MicroBatch], list[MicroBatch]]
) -> list[MicroBatch]:
    """Halve the micro-batch with the most padded tokens until there are ``count``
    (processes must run as many forward/backward passes as each other)."""
    micro_batches = list(micro_batches)
    while len(micro_batches) < count:
        if all(len(m) == 1 for m in micro_batches):
            raise ValueError(f"{len(micro_batches)} rows cannot make {count} micro-batches")
        position = max(
            (i for i, m in enumerate(micro_batches) if len(m) > 1),
            key=lambda i: micro_batches[i].batch.inputs["input_ids"].numel(),
        )
        micro_batches[position : position + 1] = halves(micro_batches[position])
    return micro_batches


def prompt_seed(seed: int, step: int, position: int) -> int:
    """A seed for one prompt of one step, the same on any number of processes."""
    return (seed * 1_000_003 + step * 10_007 + position) % (2**63 - 1)


def rank_positions(
    prompts_per_step: int, prompts_per_update: int, rank: int, world: int
) -> list[int]:
    """Positions in the step's prompt list that process ``rank`` handles.

    Each update's block of ``prompts_per_update`` prompts is cut into ``world``
    contiguous slices, so every update spans all processes and a process's k-th
    local update is its slice of the global k-th update.
    """
    if prompts_per_update % world:
        raise ValueError(
            f"batch.prompts_per_update={prompts_per_update} must be a multiple of the "
            f"number of processes ({world})"
        )
    share = prompts_per_update // world
    return [
        start + rank * share + offset
        for start in range(0, prompts_per_step, prompts_per_update)
        for offset in range(share)
    ]
