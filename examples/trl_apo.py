"""APO with TRL: Qwen2.5-VL-3B on a View-R1-format file, the paper's settings.

    pip install "apo-rl[trl]" vllm
    accelerate launch examples/trl_apo.py --data train.jsonl      # 8 GPUs, vLLM colocated
    python examples/trl_apo.py --tiny                             # CPU, built-in tiny model

TRL's GRPOTrainer does everything (generation with vLLM, batching, the loss,
DeepSpeed/FSDP through ``accelerate launch``); apo's APOTrainer adds STCR to the
advantages and DADS to the KL term. Rewards are apo's: accuracy (1 when the
answer inside <answer> matches; the correctness DADS and STCR read) plus 0.5 x
format (<think>...</think><answer>...</answer>), the official reward.

``--tiny`` runs the same script on CPU with apo's built-in tiny model (a random
Qwen2.5-VL of 1M parameters, built locally, nothing downloaded), transformers
generation instead of vLLM, and small batches: plumbing, not learning.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

try:
    from apo.integrations.trl import APOConfig, APOTrainer
except ModuleNotFoundError as error:
    if error.name != "trl" and not (error.name or "").startswith("trl."):
        raise
    print(
        f"{Path(__file__).name}: error: TRL is not installed: pip install 'apo-rl[trl]'",
        file=sys.stderr,
    )
    sys.exit(2)
from datasets import Dataset
from transformers import AutoProcessor

from apo.data.formats import parse_record
from apo.data.prompts import PromptConfig, chat_messages
from apo.data.records import read_records
from apo.rewards.accuracy import accuracy_reward
from apo.rewards.format import format_reward

EXAMPLE_DATA = Path(__file__).resolve().parent / "data" / "viewr1.jsonl"


def load_dataset(path: str | Path) -> Dataset:
    """A View-R1 (or plain) file as TRL's conversational, multimodal dataset."""
    rows = []
    for index, record in enumerate(read_records(path)):
        example = parse_record(record, index)
        messages = chat_messages(example, PromptConfig(), is_multimodal=True)
        for message in messages:  # TRL's multimodal prompts take content as a list of parts
            if isinstance(message["content"], str):
                message["content"] = [{"type": "text", "text": message["content"]}]
        rows.append(
            {
                "prompt": messages,
                "images": [ref.open() for ref in example.images],
                "answer": example.answer,
                "choices": example.choices or [],
            }
        )
    return Dataset.from_list(rows)


def _text(completion: Any) -> str:
    return completion if isinstance(completion, str) else completion[0]["content"]


def accuracy(completions, answer, choices, **kwargs) -> list[float]:
    """1 when the answer is right: the correctness reward (``correctness_reward``)."""
    return [
        accuracy_reward(_text(c), a, ch or None)
        for c, a, ch in zip(completions, answer, choices, strict=True)
    ]


def formatted(completions, **kwargs) -> list[float]:
    """1 for <think>...</think><answer>...</answer>; weighted 0.5 (``reward_weights``)."""
    return [format_reward(_text(c)) for c in completions]


def build_config(args: argparse.Namespace) -> APOConfig:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    common = {
        "output_dir": args.output_dir,
        "correctness_reward": "accuracy",
        "reward_weights": [1.0, 0.5],
        # APOConfig's defaults are APO's official algorithm settings: dads and stcr on,
        # saturating DADS schedule, STCR base 1.00001, beta 1e-3 (k3), loss_type grpo
        # (per-response token mean), group std + 1e-9, no importance-weighted KL.
        "num_generations": 8,
        "temperature": 1.0,
        "epsilon": 0.2,
        "learning_rate": 1e-6,
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "max_grad_norm": 1.0,
        "lr_scheduler_type": "constant_with_warmup",
        "logging_steps": 1,
        "report_to": "none",
        "seed": args.seed,
    }
    if args.tiny:
        return APOConfig(
            **common
            | {
                "num_generations": 4,
                "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 1,
                "max_completion_length": 16,
                "max_steps": args.max_steps or 2,
                "use_cpu": True,
                "bf16": False,
                "save_strategy": "no",
                "disable_tqdm": True,
            }
        )
    # The paper: rollouts of 128 prompts x 8 answers, optimizer updates of 64 answers,
    # 2 episodes, 4096 new tokens, bf16, 3 % warm-up.
    per_device = 8
    return APOConfig(
        **common
        | {
            "per_device_train_batch_size": per_device,
            "gradient_accumulation_steps": max(1, 64 // (per_device * world)),
            "generation_batch_size": 128 * 8,
            "max_completion_length": 4096,
            "num_train_epochs": 2,
            "max_steps": args.max_steps or -1,
            "warmup_steps": 0.03,
            "bf16": True,
            "gradient_checkpointing": True,
            "use_vllm": True,
            "vllm_mode": args.vllm_mode,
            "vllm_max_model_length": 9216 + 4096,  # the paper's longest prompt + new tokens
            "save_steps": 100,
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(EXAMPLE_DATA), help="a View-R1-format file")
    parser.add_argument("--model", default="Qwen/Qwen2.5-VL-3B-Instruct")
    parser.add_argument("--output-dir", default="runs/trl_apo")
    parser.add_argument("--vllm-mode", default="colocate", choices=["colocate", "server"])
    parser.add_argument("--max-steps", type=int, default=0, help="0: the paper's 2 episodes")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--tiny", action="store_true", help="CPU, apo's built-in tiny model, no vLLM"
    )
    args = parser.parse_args(argv)

    model = args.model
    if args.tiny:
        from apo.models import tiny_model_path

        model = str(tiny_model_path())
    config = build_config(args)
    trainer = APOTrainer(
        model=model,
        reward_funcs=[accuracy, formatted],
        args=config,
        train_dataset=load_dataset(args.data),
        processing_class=AutoProcessor.from_pretrained(model, padding_side="left"),
    )
    trainer.train()
    if not args.tiny:
        trainer.save_model(args.output_dir)


if __name__ == "__main__":
    main()
