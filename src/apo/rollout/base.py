"""The rollout interface: prompts in, G responses per prompt out.

The trainer only talks to :class:`RolloutEngine` and builds its engine by name
(``rollout.engine``) with :func:`build_engine`, so a new engine (vLLM colocated
or as a server, say) is one class registered in ``ENGINES``::

    @ENGINES.register("vllm")
    class VllmEngine:
        def __init__(self, model, processor, tokenizer, is_multimodal): ...
        def generate(self, prompts, sampling, seeds=None): ...
        def sync_weights(self): ...
        record_logprobs = False  # set by the trainer: fill Rollout.sampling_logps
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator

from apo.data.prompts import PromptInput
from apo.registry import Registry
from apo.section import Section

FinishReason = Literal["eos", "stop", "length"]

DEFAULT_ENGINE = "native"
"""The engine of training (``rollout.engine``) and of ``apo eval``."""


class SamplingConfig(Section):
    """How responses are sampled."""

    group_size: int = Field(8, ge=1, description="Responses per prompt (G).")
    temperature: float = Field(
        1.0, ge=0.0, description="Sampling temperature; 0 means greedy decoding."
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, description="Sample among the k likeliest tokens; 0: no limit.")
    max_new_tokens: int = Field(1024, ge=1, description="Longest response, in tokens.")
    stop_strings: list[str] = Field(
        default_factory=list, description="Stop a response once it ends with one of these."
    )
    max_batch_size: int = Field(
        64, ge=1, description="Prompts per generation call (responses: this times G)."
    )
    ignore_eos: bool = Field(
        False,
        description=(
            "Never stop at the end token: every response is max_new_tokens long "
            "(fixed-length benchmarks)."
        ),
    )


class RolloutConfig(SamplingConfig):
    """How responses are generated (G per prompt)."""

    engine: str = Field(
        DEFAULT_ENGINE,
        description=(
            "Generation engine (apo.rollout.ENGINES). native: apo's decoding loop (each "
            "prompt encoded once per group, finished rows dropped; falls back to generate "
            "for models it cannot drive); transformers: the policy's generate."
        ),
    )
    seed_per_prompt: bool = Field(
        False,
        description=(
            "Sample each prompt alone with a seed derived from (seed, step, prompt): the "
            "responses no longer depend on batching or the number of processes (slower)."
        ),
    )
    dynamic_sampling: bool = Field(
        False,
        description=(
            "DAPO's dynamic sampling: groups whose rewards are all equal (no policy "
            "gradient) are dropped and more batches of prompts generated until the step "
            "has batch.prompts_per_step groups with varied rewards, or "
            "dynamic_sampling_max_rounds batches were generated (then it trains on those it "
            "has)."
        ),
    )
    dynamic_sampling_max_rounds: int = Field(
        4, ge=1, description="Most batches of prompts generated per step with dynamic_sampling."
    )

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, name: str) -> str:
        if name not in ENGINE_MODULES and name not in ENGINES:
            known = sorted(set(ENGINE_MODULES) | set(ENGINES))
            raise ValueError(f"unknown rollout engine {name!r}; allowed: {', '.join(known)}")
        return name


@dataclass
class Rollout:
    """One response to one prompt.

    ``response_ids`` include the end-of-sequence token when the model produced
    one (it is trained on, so the model learns to stop). ``truncated`` is True
    when the response hit ``max_new_tokens`` without finishing.
    ``sampling_logps``: the log-probability of each response token under the
    distribution it was sampled from (temperature, top-k, top-p applied), when
    the engine was asked to record them (``engine.record_logprobs``).
    """

    prompt_index: int
    response_ids: list[int]
    text: str
    finish_reason: FinishReason
    sampling_logps: list[float] | None = None

    @property
    def length(self) -> int:
        return len(self.response_ids)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class RolloutEngine(Protocol):
    def generate(
        self,
        prompts: Sequence[PromptInput],
        sampling: SamplingConfig,
        seeds: Sequence[int] | None = None,
    ) -> list[Rollout]:
        """``len(prompts) * G`` rollouts, grouped: those of prompt k at [k*G, (k+1)*G).

        ``seeds`` (one per prompt) make each prompt's responses reproducible
        whatever the batching."""
        ...

    # When True, every rollout carries its tokens' sampling log-probs
    # (Rollout.sampling_logps): the trainer sets it for algorithm.importance_sampling.
    record_logprobs: bool

    def sync_weights(self) -> None:
        """Called after every optimizer step. Engines that hold their own copy of the
        weights (an inference server) refresh it here; engines that generate with
        the policy module itself have nothing to do."""
        ...


ENGINES: Registry[Callable[..., RolloutEngine]] = Registry("rollout engine")
"""Engine classes by name, each built as ``cls(model, processor, tokenizer, is_multimodal)``."""

ENGINE_MODULES = {
    "native": "apo.rollout.native_engine",
    "transformers": "apo.rollout.transformers_engine",
}
"""The built-in engines' modules (torch, transformers): each registers its engine in
``ENGINES`` when :func:`build_engine` first imports it, so a config names one without
loading them."""


def build_engine(
    name: str, model: Any, processor: Any, tokenizer: Any, is_multimodal: bool
) -> RolloutEngine:
    """The engine registered as ``name`` (``rollout.engine``), generating with ``model``."""
    if name in ENGINE_MODULES:
        importlib.import_module(ENGINE_MODULES[name])
    return ENGINES.get(name)(model, processor, tokenizer, is_multimodal)
