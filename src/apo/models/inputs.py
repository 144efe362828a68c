"""Model inputs from rendered prompts (with images) and generated responses.

Layout used everywhere: prompts left-padded to a common length P, responses
right-padded to T, so every response starts at column P::

    [pad pad p p p p | r r r r EOS pad]
     <----- P -----> <------ T ------>
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def encode_prompts(
    processor: Any, texts: Sequence[str], images: Sequence[Sequence[Any]], is_multimodal: bool
) -> dict[str, Tensor]:
    """Tokenize chat-rendered prompts (and process their images), left-padded.

    Args:
        processor: a VLM's processor, or a tokenizer for a text-only model.
        texts: prompts already rendered with the chat template.
        images: per prompt, its images in the order their placeholders appear.
    """
    if not texts:
        raise ValueError("no prompts to encode")
    if is_multimodal:
        flat_images = [image for prompt_images in images for image in prompt_images]
        encoded = processor(
            text=list(texts),
            images=flat_images or None,
            return_tensors="pt",
            padding=True,
            padding_side="left",
        )
    else:
        if any(images):
            raise ValueError("this model is text-only, but a prompt has images")
        # The chat template already placed every special token the model needs.
        encoded = processor(
            list(texts),
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        )
    return dict(encoded)


def collate_prompts(encoded: Sequence[dict[str, Tensor]], pad_id: int) -> dict[str, Tensor]:
    """Prompts encoded one at a time (:func:`encode_prompts` of one prompt each), batched
    as the processor batches them: per-token tensors ([1, P_i]) left-padded to the
    longest (``pad_id`` for the ids, 0 elsewhere), everything else (image patches,
    grids) concatenated in row order. Lets a prompt's images be processed once per
    step however many responses it has."""
    width = max(e["input_ids"].shape[1] for e in encoded)
    keys = list(dict.fromkeys(key for e in encoded for key in e))
    batch = {}
    for key in keys:
        present = [e for e in encoded if key in e]
        per_token = len(present) == len(encoded) and all(
            e[key].dim() == 2 and e[key].shape == e["input_ids"].shape for e in encoded
        )
        if per_token:
            fill = pad_id if key == "input_ids" else 0
            batch[key] = torch.cat(
                [
                    torch.nn.functional.pad(e[key], (width - e[key].shape[1], 0), value=fill)
                    for e in encoded
                ]
            )
        else:
            batch[key] = torch.cat([e[key] for e in present])
    return batch


@dataclass
class SequenceBatch:
    """Prompts + responses as one model input, with the response tokens marked.

    ``inputs`` go to the model as keyword arguments; the response tokens are
    ``inputs["input_ids"][:, prompt_length:]``, of which ``response_mask`` marks
    the real ones (not padding).
    """

    inputs: dict[str, Tensor]
    response_ids: Tensor  # [B, T]
    response_mask: Tensor  # [B, T] bool
    prompt_length: int  # P
    # Set when rows share prompts (apo.models.prefix runs each prompt once): the
    # distinct prompts' inputs, left-padded to the same P, and each row's prompt.
    distinct_prompts: dict[str, Tensor] | None = None
    prompt_index: Tensor | None = None  # [B] long

    def to(self, device: torch.device | str) -> SequenceBatch:
        distinct = self.distinct_prompts
        return SequenceBatch(
            inputs={key: value.to(device) for key, value in self.inputs.items()},
            response_ids=self.response_ids.to(device),
            response_mask=self.response_mask.to(device),
            prompt_length=self.prompt_length,
            distinct_prompts=None
            if distinct is None
            else {key: value.to(device) for key, value in distinct.items()},
            prompt_index=None if self.prompt_index is None else self.prompt_index.to(device),
        )


def pad_responses(
    responses: Sequence[Sequence[int] | Tensor], pad_id: int
) -> tuple[Tensor, Tensor]:
    """Right-pad token-id sequences to [B, T]; returns (ids, mask)."""
    width = max((len(r) for r in responses), default=0)
    ids = torch.full((len(responses), max(width, 1)), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for row, response in enumerate(responses):
        length = len(response)
        if length:
            ids[row, :length] = torch.as_tensor(response, dtype=torch.long)
            mask[row, :length] = True
    return ids, mask


def build_sequence_batch(
    prompt_inputs: dict[str, Tensor], responses: Sequence[Sequence[int] | Tensor], pad_id: int
) -> SequenceBatch:
    """Append right-padded responses to encoded (left-padded) prompts.

    ``prompt_inputs`` is the output of :func:`encode_prompts` for the same rows.
    Every other per-token input of the processor (shape [B, P], e.g. Qwen's
    ``mm_token_type_ids``) is extended with zeros over the response.
    """
    input_ids = prompt_inputs["input_ids"]
    batch, prompt_length = input_ids.shape
    if len(responses) != batch:
        raise ValueError(f"{len(responses)} responses for {batch} prompts")
    response_ids, response_mask = pad_responses(responses, pad_id)
    width = response_ids.shape[1]
    inputs = dict(prompt_inputs)
    for key, value in prompt_inputs.items():
        if key == "input_ids":
            inputs[key] = torch.cat([value, response_ids], dim=1)
        elif key == "attention_mask":
            inputs[key] = torch.cat([value, response_mask.to(value.dtype)], dim=1)
        elif value.dim() == 2 and value.shape == (batch, prompt_length):
            inputs[key] = torch.cat([value, value.new_zeros(batch, width)], dim=1)
    return SequenceBatch(
        inputs=inputs,
        response_ids=response_ids,
        response_mask=response_mask,
        prompt_length=prompt_length,
    )
