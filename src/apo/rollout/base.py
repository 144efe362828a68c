"""The rollout interface: prompts in, G responses per prompt out.

The trainer only talks to :class:`RolloutEngine`, so a new engine (vLLM
colocated or as a server, say) plugs in without touching the trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

FinishReason = Literal["eos", "stop", "length"]


class SamplingConfig(BaseModel):
    """How responses are sampled."""

    model_config = ConfigDict(extra="forbid")

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
    return_logprobs: bool = Field(
        False,
        description=(
            "Also return per-token log-probs of the sampling distribution "
            "(transformers engine: keeps every step's scores, memory-hungry)."
        ),
    )


@dataclass
class PromptInput:
    """A prompt rendered with the chat template, and its images in placeholder order."""

    text: str
    images: list[Any] = field(default_factory=list)


@dataclass
class Rollout:
    """One response to one prompt.

    ``response_ids`` include the end-of-sequence token when the model produced
    one (it is trained on, so the model learns to stop). ``truncated`` is True
    when the response hit ``max_new_tokens`` without finishing.
    """

    prompt_index: int
    response_ids: list[int]
    text: str
    finish_reason: FinishReason
    logprobs: Tensor | None = None

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

    def sync_weights(self) -> None:
        """Called after every optimizer step. Engines that hold their own copy of the
        weights (an inference server) refresh it here; engines that generate with
        the policy module itself have nothing to do."""
        ...
