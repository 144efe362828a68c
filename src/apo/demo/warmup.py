"""Supervised warm-up on a noisy teacher: the demo's start model, with latent ability.

RL sharpens what a policy can already sometimes do: it turns pass@k into
pass@1. So the demo starts from a tiny Qwen2.5-VL that perceives the scenes
reliably but answers unreliably. It is fine-tuned on demonstrations of a
:class:`~apo.data.synthetic.NoisyTeacher`, whose enumeration of the scene is
always right but whose final answer is a near miss more often than not, and
who sometimes re-enumerates and hesitates before a wrong answer (so incorrect
responses are longer). Imitating it, the model learns to see and to count, and
learns to prefer the near miss: its greedy answers are mostly wrong while its
samples are often right.

:func:`probe` measures that: greedy accuracy, pass@1 and pass@k of sampled
answers, how often the greedy enumeration is exactly right, and how often the
greedy answer agrees with what the model's own enumeration implies.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from apo.data import PromptInput
from apo.data.formats import Example
from apo.data.images import ImageRef
from apo.data.prompts import PromptConfig, render_prompt
from apo.data.synthetic import REASONING_TASKS, NoisyTeacher, implied_answer, make_split
from apo.models import build_sequence_batch, encode_prompts, sequence_log_probs
from apo.models.tiny import build_model, build_processor
from apo.rewards import accuracy_reward
from apo.rollout import SamplingConfig, TransformersEngine

# Short prompts: the demo's questions carry no long system instruction.
DEMO_PROMPT = PromptConfig(system_prompt=None)


@dataclass(frozen=True)
class ModelSize:
    """Sizes of the demo's tiny Qwen2.5-VL (see :func:`apo.models.tiny.build_model`)."""

    hidden: int = 128
    layers: int = 2
    vision_hidden: int = 64
    vision_depth: int = 2


def as_example(row: dict[str, Any]) -> Example:
    return Example(
        id=row["id"],
        question=row["question"],
        answer=row["answer"],
        images=[ImageRef(image=row["image"])],
        choices=row.get("choices"),
    )


def prompt_of(row: dict[str, Any], processor: Any) -> PromptInput:
    text = render_prompt(as_example(row), processor, DEMO_PROMPT, is_multimodal=True)
    return PromptInput(text=text, images=[row["image"]])


def supervised_loss(
    model: Any, processor: Any, rows: list[dict[str, Any]], responses: list[str]
) -> torch.Tensor:
    """Mean negative log-likelihood of ``responses`` to ``rows`` (end token included)."""
    tokenizer = processor.tokenizer
    prompts = [prompt_of(row, processor) for row in rows]
    inputs = encode_prompts(processor, [p.text for p in prompts], [p.images for p in prompts], True)
    targets = [[*tokenizer.encode(text), tokenizer.eos_token_id] for text in responses]
    batch = build_sequence_batch(inputs, targets, tokenizer.pad_token_id)
    logp = sequence_log_probs(model, batch).logp
    return -(logp.sum() / batch.response_mask.sum())


def reasoning_checks(rows: list[dict[str, Any]], responses: list[str]) -> dict[str, float]:
    """How a model's responses to reasoning rows relate to their scenes:

    - ``enumeration``: the fraction whose enumeration lists the scene exactly;
    - ``agreement``: the fraction whose final answer is the one their own
      enumeration implies (whether or not the enumeration is right).
    """
    pairs = [(r, t) for r, t in zip(rows, responses, strict=True) if r["task"] in REASONING_TASKS]
    enumerated = agreed = 0
    for row, text in pairs:
        enumerated += text.startswith(f"<think>{row['reasoning'].split('. ')[0]}.")
        implied = implied_answer(row, text)
        agreed += implied is not None and accuracy_reward(text, implied, row.get("choices")) == 1
    n = max(1, len(pairs))
    return {"enumeration": enumerated / n, "agreement": agreed / n}


@torch.no_grad()
def probe(
    model: Any,
    processor: Any,
    rows: list[dict[str, Any]],
    *,
    samples: int = 8,
    max_new_tokens: int = 96,
    seed: int = 0,
) -> dict[str, float]:
    """What the model can do on ``rows`` (in-process scoring):

    - ``greedy``: accuracy of the greedy answer;
    - ``pass@1``: mean accuracy of ``samples`` answers at temperature 1;
    - ``pass@k``: fraction of questions with at least one right sampled answer;
    - ``enumeration``: greedy enumerations that list the scene exactly (reasoning
      questions only);
    - ``agreement``: greedy answers equal to what their own enumeration implies
      (reasoning questions only).
    """
    engine = TransformersEngine(model, processor, processor.tokenizer, is_multimodal=True)
    prompts = [prompt_of(row, processor) for row in rows]

    def sample(group_size: int, temperature: float) -> list[Any]:
        sampling = SamplingConfig(
            group_size=group_size,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            max_batch_size=128,
        )
        return engine.generate(prompts, sampling)

    def right(text: str, row: dict[str, Any]) -> float:
        return accuracy_reward(text, row["answer"], row.get("choices"))

    torch.manual_seed(seed)
    greedy = sample(1, 0.0)
    sampled = sample(samples, 1.0)
    hits = [[] for _ in rows]
    for r in sampled:
        hits[r.prompt_index].append(right(r.text, rows[r.prompt_index]))
    return {
        "greedy": sum(right(r.text, rows[r.prompt_index]) for r in greedy) / len(rows),
        "pass@1": sum(sum(h) / len(h) for h in hits) / len(rows),
        f"pass@{samples}": sum(max(h) for h in hits) / len(rows),
        **reasoning_checks(rows, [r.text for r in greedy]),
    }


def warm_up(
    output_dir: str | Path,
    *,
    steps: int = 300,
    schedule_steps: int | None = None,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    train_size: int = 4000,
    size: ModelSize = ModelSize(),
    teacher: NoisyTeacher | None = None,
    log_every: int = 50,
    probe_size: int = 48,
) -> Path:
    """Build a tiny model, fine-tune it on the noisy teacher's demonstrations, save it.

    The one-cycle learning-rate schedule spans ``schedule_steps`` (default:
    ``steps``); training may stop before its end."""
    torch.manual_seed(seed)
    processor = build_processor()
    model = build_model(
        processor.tokenizer,
        seed=seed,
        hidden=size.hidden,
        layers=size.layers,
        vision_hidden=size.vision_hidden,
        vision_depth=size.vision_depth,
    )
    rows = make_split("train", train_size, seed=seed + 10) + make_split(
        "general", train_size // 4, seed=seed + 10
    )
    probe_rows = make_split("test", probe_size, seed=seed + 10)
    order = random.Random(seed)
    teacher = teacher or NoisyTeacher()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=schedule_steps or steps, pct_start=0.05
    )
    model.train()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        batch = order.sample(rows, batch_size)
        responses = [teacher.response(row, order) for row in batch]
        loss = supervised_loss(model, processor, batch, responses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if log_every and (step % log_every == 0 or step == steps):
            model.eval()
            found = probe(model, processor, probe_rows, seed=seed)
            elapsed = time.perf_counter() - start
            figures = "  ".join(f"{k} {v:.2f}" for k, v in found.items())
            print(f"step {step}: loss {loss.item():.3f}  {figures}  {elapsed:.0f}s", flush=True)
            model.train()
    model.eval()
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir, safe_serialization=True)
    processor.save_pretrained(output_dir)
    return output_dir
