"""Supervised warm-up of the tiny model on the synthetic task: the demo's starting point.

RL cannot start from a policy that never succeeds, so the demo starts from the
built-in tiny model after a short supervised fine-tuning on worked answers of
the synthetic task (reasoning and general questions alike). It is stopped
early on purpose: the starting policy answers some reasoning questions right
and most wrong, leaving RL room to improve.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import torch

from apo.data.formats import Example
from apo.data.images import ImageRef
from apo.data.prompts import PromptConfig, render_prompt
from apo.data.synthetic import make_split, target_response
from apo.models import build_sequence_batch, encode_prompts, sequence_log_probs
from apo.models.tiny import build_model, build_processor
from apo.rewards import accuracy_reward
from apo.rollout import PromptInput, SamplingConfig, TransformersEngine

# Short prompts: the demo's questions carry no long system instruction.
DEMO_PROMPT = PromptConfig(system_prompt=None)


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


def supervised_loss(model: Any, processor: Any, rows: list[dict[str, Any]]) -> torch.Tensor:
    """Mean negative log-likelihood of the worked responses (end token included)."""
    tokenizer = processor.tokenizer
    prompts = [prompt_of(row, processor) for row in rows]
    inputs = encode_prompts(processor, [p.text for p in prompts], [p.images for p in prompts], True)
    targets = [[*tokenizer.encode(target_response(row)), tokenizer.eos_token_id] for row in rows]
    batch = build_sequence_batch(inputs, targets, tokenizer.pad_token_id)
    logp = sequence_log_probs(model, batch).logp
    return -(logp.sum() / batch.response_mask.sum())


@torch.no_grad()
def accuracy(
    model: Any, processor: Any, rows: list[dict[str, Any]], max_new_tokens: int = 64
) -> float:
    """Greedy accuracy on ``rows`` (in-process scoring: for monitoring only)."""
    engine = TransformersEngine(model, processor, processor.tokenizer, is_multimodal=True)
    sampling = SamplingConfig(
        group_size=1, temperature=0.0, max_new_tokens=max_new_tokens, max_batch_size=64
    )
    rollouts = engine.generate([prompt_of(row, processor) for row in rows], sampling)
    scores = [
        accuracy_reward(r.text, row["answer"], row.get("choices"))
        for r, row in zip(rollouts, rows, strict=True)
    ]
    return sum(scores) / len(scores)


def warm_up(
    output_dir: str | Path,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    train_size: int = 4000,
    log_every: int = 50,
) -> Path:
    """Build the tiny model, fine-tune it on worked synthetic answers, save it."""
    torch.manual_seed(seed)
    processor = build_processor()
    model = build_model(processor.tokenizer, seed=seed)
    rows = make_split("train", train_size, seed=seed + 10) + make_split(
        "general", train_size // 4, seed=seed + 10
    )
    probe_reasoning = make_split("test", 64, seed=seed + 10)
    probe_general = make_split("general", 32, seed=seed + 11)
    order = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.1
    )
    model.train()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        batch = order.sample(rows, batch_size)
        loss = supervised_loss(model, processor, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if log_every and (step % log_every == 0 or step == steps):
            model.eval()
            reasoning = accuracy(model, processor, probe_reasoning)
            general = accuracy(model, processor, probe_general)
            elapsed = time.perf_counter() - start
            print(
                f"step {step}: loss {loss.item():.3f}  reasoning acc {reasoning:.2f}  "
                f"general acc {general:.2f}  {elapsed:.0f}s",
                flush=True,
            )
            model.train()
    model.eval()
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir, safe_serialization=True)
    processor.save_pretrained(output_dir)
    return output_dir
