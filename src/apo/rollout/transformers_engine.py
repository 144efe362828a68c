"""Generation with the policy itself, through transformers' ``generate``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from apo.models.inputs import encode_prompts
from apo.models.sharding import gathered_weights
from apo.models.unwrap import unwrap_model
from apo.out_of_memory import retry_halving
from apo.rollout.base import ENGINES, FinishReason, PromptInput, Rollout, SamplingConfig

logger = logging.getLogger(__name__)


def _end_token_ids(model: Any, tokenizer: Any) -> set[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        ids = set()
    elif isinstance(configured, int):
        ids = {configured}
    else:
        ids = set(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


_SENTINEL = "apo-end-of-turn-probe"


def turn_end_token_ids(processor: Any) -> set[int]:
    """The special token that closes an assistant turn in the chat template
    (``<|im_end|>``, ``<end_of_turn>``, ``<|eot_id|>``), found by rendering a short
    conversation; empty without a template.

    A model's generation config often names only its document end (Gemma's base
    models: ``<eos>``), while a chat-style answer ends its turn with this token.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    if not (getattr(processor, "chat_template", None) or tokenizer.chat_template):
        return set()
    special = set(tokenizer.all_special_ids) | {
        index for index, token in tokenizer.added_tokens_decoder.items() if token.special
    }
    # Text-only templates take a string, some multimodal ones only a list of parts.
    for content in (_SENTINEL, [{"type": "text", "text": _SENTINEL}]):
        turns = [
            {"role": "user", "content": "?"},
            {"role": "assistant", "content": content},
        ]
        try:
            text = processor.apply_chat_template(turns, tokenize=False)
        except Exception:  # templates raise their own errors (roles, content)
            continue
        if _SENTINEL in text:
            after = text.split(_SENTINEL, 1)[1].lstrip()
            ids = tokenizer(after, add_special_tokens=False)["input_ids"]
            if ids and ids[0] in special:
                return {ids[0]}
    return set()


# Placeholder tokens that stand for image or video features. A response must never
# contain one: fed back for training, the model would look for features it lacks.
_PLACEHOLDER_TOKEN_ATTRIBUTES = (
    "image_token_id",
    "video_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
    "image_token_index",
    "video_token_index",
)


def placeholder_token_ids(model: Any) -> list[int]:
    """Ids of the model's image/video placeholder tokens (none for a text-only model)."""
    config = getattr(model, "config", None)
    ids = {getattr(config, name, None) for name in _PLACEHOLDER_TOKEN_ATTRIBUTES}
    return sorted(i for i in ids if isinstance(i, int) and i >= 0)


def _cuda_devices(model: Any) -> list[int]:
    device = next(model.parameters()).device
    return [device.index or 0] if device.type == "cuda" else []


@ENGINES.register("transformers")
class TransformersEngine:
    """Batched sampling with a KV cache, left-padded prompts and any number of images.

    Generates with the (unwrapped) policy module, so its weights are always current.
    """

    def __init__(self, model: Any, processor: Any, tokenizer: Any, is_multimodal: bool) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer
        self.is_multimodal = is_multimodal
        self._turn_end_ids = turn_end_token_ids(processor)
        self.record_logprobs = False

    def end_ids(self, model: Any) -> set[int]:
        """Where a response ends: the generation config's end tokens, the tokenizer's,
        and the chat template's end of turn."""
        return _end_token_ids(model, self.tokenizer) | self._turn_end_ids

    def sync_weights(self) -> None:
        """Nothing to do: generation runs on the training module itself."""

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[PromptInput],
        sampling: SamplingConfig,
        seeds: Sequence[int] | None = None,
    ) -> list[Rollout]:
        """G responses per prompt, grouped by prompt.

        With ``seeds``, each prompt is sampled alone under its own seed, so its
        responses do not depend on which prompts share its batch (or process).
        """
        model = unwrap_model(self.model)
        was_training = model.training
        model.eval()  # no dropout while sampling
        try:
            # Sharded weights gathered whole: each process may run its own number of passes.
            with gathered_weights(model):
                return self._generate(model, prompts, sampling, seeds)
        finally:
            model.train(was_training)

    def _generate(
        self,
        model: Any,
        prompts: Sequence[PromptInput],
        sampling: SamplingConfig,
        seeds: Sequence[int] | None,
    ) -> list[Rollout]:
        if seeds is None:
            return self._generate_in_batches(model, prompts, 0, sampling)
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        rollouts: list[Rollout] = []
        for index, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
            with torch.random.fork_rng(devices=_cuda_devices(model)):
                torch.manual_seed(seed)
                rollouts += self._generate_in_batches(model, [prompt], index, sampling)
        return rollouts

    def _generate_in_batches(
        self, model: Any, prompts: Sequence[PromptInput], offset: int, sampling: SamplingConfig
    ) -> list[Rollout]:
        """Generation calls of ``max_batch_size`` prompts; out of memory, of half as
        many (kept for the calls that follow)."""

        def warn(old: int, new: int) -> None:
            logger.warning(
                "out of memory generating for %d prompts at once: retrying with %d and %d "
                "(lower rollout.max_batch_size to avoid the retry)",
                old,
                new,
                old - new,
            )

        def advice(size: int) -> str:
            return (
                f"out of memory generating even one prompt's {sampling.group_size} responses "
                f"of up to {sampling.max_new_tokens} tokens: lower the group size or the "
                "number of new tokens, or use smaller images"
            )

        rollouts: list[Rollout] = []
        start, size = 0, sampling.max_batch_size
        while start < len(prompts):
            chunk, size = retry_halving(
                lambda n, start=start: self._generate_chunk(
                    model, prompts[start : start + n], offset + start, sampling
                ),
                min(size, len(prompts) - start),
                on_halve=warn,
                advice=advice,
            )
            rollouts += chunk
            start += size
        return rollouts

    def _generate_chunk(
        self, model: Any, prompts: Sequence[PromptInput], offset: int, sampling: SamplingConfig
    ) -> list[Rollout]:
        inputs = self._encode(model, prompts)
        prompt_length = inputs["input_ids"].shape[1]
        end_ids = self.end_ids(model)
        greedy = sampling.temperature == 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": not greedy,
            # Greedy decoding gives G identical responses: decode once, copy below.
            "num_return_sequences": 1 if greedy else sampling.group_size,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(end_ids),
            "return_dict_in_generate": True,
        }
        if sampling.ignore_eos:
            kwargs["min_new_tokens"] = sampling.max_new_tokens  # the end token is masked
        suppressed = placeholder_token_ids(model)
        if suppressed:
            kwargs["suppress_tokens"] = suppressed
        if not greedy:
            kwargs |= {
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "top_k": sampling.top_k,
            }
        if sampling.stop_strings:
            kwargs |= {"stop_strings": sampling.stop_strings, "tokenizer": self.tokenizer}
        # The scores generate samples from (after temperature, top-k, top-p): one
        # [rows, vocabulary] tensor per step, kept only when asked for.
        kwargs["output_scores"] = self.record_logprobs
        output = model.generate(**inputs, **kwargs)
        generated = output.sequences[:, prompt_length:].cpu()
        logps = None
        if self.record_logprobs:
            logps = model.compute_transition_scores(
                output.sequences, output.scores, normalize_logits=True
            ).cpu()
        if greedy and sampling.group_size > 1:
            generated = generated.repeat_interleave(sampling.group_size, dim=0)
            logps = None if logps is None else logps.repeat_interleave(sampling.group_size, dim=0)
        return self._rollouts(
            generated.tolist(), offset, end_ids, sampling, None if logps is None else logps.tolist()
        )

    def _encode(self, model: Any, prompts: Sequence[PromptInput]) -> dict[str, Any]:
        """The prompts (and their images) as left-padded model inputs on its device."""
        device = next(model.parameters()).device
        inputs = encode_prompts(
            self.processor,
            [p.text for p in prompts],
            [p.images for p in prompts],
            self.is_multimodal,
        )
        return {key: value.to(device) for key, value in inputs.items()}

    def _rollouts(
        self,
        rows: list[list[int]],
        offset: int,
        end_ids: set[int],
        sampling: SamplingConfig,
        logps: list[list[float]] | None = None,
    ) -> list[Rollout]:
        """Generated token rows (G per prompt, in prompt order) as rollouts; ``logps``:
        each row's sampling log-probs, token by token."""
        rollouts = []
        for row, tokens in enumerate(rows):
            ids, reason = self._cut(tokens, end_ids, sampling)
            rollouts.append(
                Rollout(
                    prompt_index=offset + row // sampling.group_size,
                    response_ids=ids,
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    finish_reason=reason,
                    sampling_logps=None if logps is None else logps[row][: len(ids)],
                )
            )
        return rollouts

    def _cut(
        self, tokens: list[int], end_ids: set[int], sampling: SamplingConfig
    ) -> tuple[list[int], FinishReason]:
        """The response proper: up to and including its end token, without padding."""
        for position, token in enumerate(tokens):
            if token in end_ids:
                return tokens[: position + 1], "eos"
        if sampling.stop_strings:
            # A row stopped by a stop string is padded while the others go on.
            length = len(tokens)
            while length and tokens[length - 1] == self.tokenizer.pad_token_id:
                length -= 1
            text = self.tokenizer.decode(tokens[:length], skip_special_tokens=True)
            if any(text.endswith(stop) for stop in sampling.stop_strings):
                return tokens[:length], "stop"
        return tokens, "length"
