"""apo's own decoding loop: each prompt encoded once per group, finished rows dropped.

transformers' ``generate`` repeats each prompt G times before the prefill (its
image tokens included) and keeps every row in the batch until the longest
response ends, so with natural lengths most of its decoding work goes to rows
that already stopped. This engine

1. runs the prefill on the P distinct prompts and repeats their KV cache G times
   (``Cache.batch_repeat_interleave``), so a prompt is encoded once per group;
2. samples each step from the same distribution as ``generate`` (placeholder
   tokens suppressed, the end token masked when ``ignore_eos``, then
   temperature, top-k and top-p, in that order). Only these: extras a model's
   ``generation_config`` may carry (a repetition penalty, as some instruct
   models ship) are not applied, so responses are drawn from the policy whose
   log-probs the update computes;
3. drops the rows that ended (end token or stop string) from the batch and the
   cache (``Cache.batch_select_indices``) once a quarter of the rows still
   decoding has ended, so finished rows stop costing work.

It supports decoder-only models whose forward takes ``cache`` and
``logits_to_keep`` and whose KV cache is transformers' ``DynamicCache`` (Qwen2,
Qwen2.5-VL, Llama and most causal LMs); for any other model it falls back to
``generate`` (:class:`TransformersEngine`), with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from transformers import DynamicCache
from transformers.generation.stopping_criteria import StopStringCriteria

from apo.models.prefix import decoder_of, prefill, supports_cached_decoding
from apo.rollout.base import ENGINES, PromptInput, Rollout, SamplingConfig
from apo.rollout.transformers_engine import TransformersEngine, placeholder_token_ids

logger = logging.getLogger(__name__)

# Rows are dropped from the batch once this share of the rows decoding has ended:
# each drop copies the whole KV cache, so dropping after every single end costs more
# than it saves on short rows.
COMPACT_SHARE = 0.25


# The native loop drives the models that can continue from a prefilled cache.
supports_native_decoding = supports_cached_decoding


def next_token_logits(
    logits: Tensor,
    sampling: SamplingConfig,
    suppressed: Sequence[int],
    end_ids: Sequence[int],
) -> Tensor:
    """Logits of the next token after generate's processors, in generate's order:
    suppressed tokens and (with ``ignore_eos``) the end tokens at -inf, then
    logits / temperature, top-k, top-p (nucleus: the smallest set of likeliest
    tokens whose probability reaches ``top_p``; the likeliest token always stays)."""
    logits = logits.float()
    masked = list(suppressed)
    if sampling.ignore_eos:
        masked += list(end_ids)
    if masked:
        logits[:, masked] = -float("inf")
    if sampling.temperature == 0:
        return logits
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if sampling.top_p < 1.0:
        # As transformers' TopPLogitsWarper: drop the tokens whose cumulative
        # probability, summed from the least likely, stays within 1 - top_p.
        sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= 1 - sampling.top_p
        drop[:, -1] = False
        logits = logits.masked_fill(drop.scatter(1, order, drop), -float("inf"))
    return logits


def choose_tokens(logits: Tensor, greedy: bool) -> Tensor:
    """The next token of each row: the argmax, or a sample of softmax(logits)."""
    if greedy:
        return logits.argmax(dim=-1)
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1).squeeze(1)


@ENGINES.register("native")
class NativeEngine(TransformersEngine):
    """Batched sampling with apo's decoding loop (see the module docstring); the same
    interface, seeds and stop strings as :class:`TransformersEngine`."""

    def __init__(self, model: Any, processor: Any, tokenizer: Any, is_multimodal: bool) -> None:
        super().__init__(model, processor, tokenizer, is_multimodal)
        self._warned = False

    def _generate_chunk(
        self, model: Any, prompts: Sequence[PromptInput], offset: int, sampling: SamplingConfig
    ) -> list[Rollout]:
        decoder = decoder_of(model)
        unsupported = supports_native_decoding(decoder)
        if unsupported is not None:
            if not self._warned:
                logger.warning(
                    "rollout.engine native cannot decode %s (%s): using generate",
                    type(decoder).__name__,
                    unsupported,
                )
                self._warned = True
            return super()._generate_chunk(model, prompts, offset, sampling)
        model = decoder
        inputs = self._encode(model, prompts)
        greedy = sampling.temperature == 0
        # Greedy decoding gives G identical responses: decode once, copy below.
        copies = 1 if greedy else sampling.group_size
        tokens, logps = self._decode(model, inputs, copies, sampling)
        if greedy and sampling.group_size > 1:
            tokens = [row for row in tokens for _ in range(sampling.group_size)]
            logps = [row for row in logps for _ in range(sampling.group_size)]
        return self._rollouts(
            tokens, offset, self.end_ids(model), sampling, logps if self.record_logprobs else None
        )

    def _decode(
        self, model: Any, inputs: dict[str, Tensor], copies: int, sampling: SamplingConfig
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Each prompt's ``copies`` responses, as token lists (end token included), and
        their tokens' sampling log-probs (empty lists unless ``record_logprobs``)."""
        attention_mask = inputs["attention_mask"]
        cache = DynamicCache(config=model.config)
        output, next_position = prefill(model, model, inputs, cache, logits_to_keep=1)
        rows = attention_mask.shape[0] * copies
        if copies > 1:
            cache.batch_repeat_interleave(copies)
        logits = output.logits[:, -1].repeat_interleave(copies, dim=0)
        attention_mask = attention_mask.repeat_interleave(copies, dim=0)
        next_position = next_position.repeat_interleave(copies, dim=0)

        end_ids = sorted(self.end_ids(model))
        suppressed = placeholder_token_ids(model)
        stops = (
            StopStringCriteria(self.tokenizer, sampling.stop_strings)
            if sampling.stop_strings
            else None
        )
        end_tensor = torch.tensor(end_ids, device=logits.device)
        generated: list[list[int]] = [[] for _ in range(rows)]
        logps: list[list[float]] = [[] for _ in range(rows)]
        active = torch.arange(rows)  # which response each batch row holds
        done = torch.zeros(rows, dtype=torch.bool)  # per batch row: its response ended
        history = torch.empty(rows, 0, dtype=torch.long, device=logits.device)  # for stops
        ended_since_drop = 0
        for step in range(sampling.max_new_tokens):
            scores = next_token_logits(logits, sampling, suppressed, end_ids)
            chosen = choose_tokens(scores, sampling.temperature == 0)
            responses, tokens = active.tolist(), chosen.tolist()
            if self.record_logprobs:  # of the distribution the token was drawn from
                chosen_logps = scores.log_softmax(dim=-1).gather(1, chosen[:, None]).squeeze(1)
                chosen_logps = chosen_logps.tolist()
            for row in (~done).nonzero().squeeze(1).tolist():
                generated[responses[row]].append(tokens[row])
                if self.record_logprobs:
                    logps[responses[row]].append(chosen_logps[row])
            ended = torch.isin(chosen, end_tensor).cpu()
            if stops is not None:
                history = torch.cat([history, chosen[:, None]], dim=1)
                ended |= stops(history, scores).cpu()
            ended &= ~done
            done |= ended
            if step + 1 == sampling.max_new_tokens or bool(done.all()):
                break
            ended_since_drop += int(ended.sum())
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(active), 1)], 1)
            if ended_since_drop >= COMPACT_SHARE * len(active):
                keep = (~done).nonzero().squeeze(1)
                device_keep = keep.to(logits.device)
                cache.batch_select_indices(device_keep)
                chosen, history = chosen[device_keep], history[device_keep]
                attention_mask = attention_mask[device_keep]
                next_position = next_position[device_keep]
                active, done = active[keep], done[keep]
                ended_since_drop = 0
            else:
                # A row that ended but stays in the batch until the next drop feeds
                # padding; what it samples is never kept.
                chosen = chosen.masked_fill(done.to(chosen.device), self.tokenizer.pad_token_id)
            output = model(
                input_ids=chosen[:, None],
                attention_mask=attention_mask,
                position_ids=next_position,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = output.logits[:, -1]
            next_position = next_position + 1
        return generated, logps
