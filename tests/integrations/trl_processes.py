"""Two APOTrainer steps on a fixed global batch, in one process or under torchrun (gloo, CPU).

    python tests/integrations/trl_processes.py MODEL OUT                          # 1 process
    torchrun --nproc_per_node 2 tests/integrations/trl_processes.py MODEL OUT     # 2 processes

Completions come from a deterministic ``rollout_func`` (a function of the prompt
and the completion's place in its group), so both runs train on the same global
batch whatever the processes. Rank 0 writes the shaping (keyed by prompt and
place) and the gradients of the last step to OUT (torch.save).
"""

from __future__ import annotations

import os
import random
import sys

import torch
from accelerate.utils import gather_object
from datasets import Dataset
from transformers import AutoTokenizer, TrainerCallback

from apo.integrations.trl import APOConfig, APOTrainer

GROUP = 4
PROMPTS = ["Count the red shapes.", "Count the blue shapes."]


def rollout(prompts, trainer):
    """Completion j of prompt p (j = place in its group, from the global index): fixed tokens."""
    tokenizer = trainer.processing_class
    local = len(prompts)
    first = trainer.accelerator.process_index * local
    prompt_ids, completion_ids = [], []
    for offset, prompt in enumerate(prompts):
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        place = (first + offset) % GROUP
        rng = random.Random(f"{text}|{place}")
        prompt_ids.append(tokenizer(text)["input_ids"])
        completion_ids.append([rng.randrange(100, 600) for _ in range(rng.randint(2, 12))])
    places = [(first + offset) % GROUP for offset in range(local)]
    return {
        "prompt_ids": prompt_ids,
        "completion_ids": completion_ids,
        "logprobs": None,
        "place": places,
    }


def lucky(completion_ids, **kwargs):
    return [float(sum(ids) % 2 == 0) for ids in completion_ids]


def short(completion_ids, **kwargs):
    return [0.5 * (len(ids) < 8) for ids in completion_ids]


class Gradients(TrainerCallback):
    def __init__(self):
        self.gradients = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.gradients = {
            n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None
        }


def main(model_path: str, out: str) -> None:
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    args = APOConfig(
        output_dir=out + ".run",
        per_device_train_batch_size=len(PROMPTS) * GROUP // processes,
        gradient_accumulation_steps=1,
        num_generations=GROUP,
        max_completion_length=12,
        beta=0.04,
        correctness_reward="lucky",
        stcr_base=1.2,
        optim="sgd",
        learning_rate=1e-2,
        max_steps=2,  # the second step has a KL term, so the DADS weights reach the gradient
        save_strategy="no",
        report_to="none",
        bf16=False,
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    gradients = Gradients()
    trainer = APOTrainer(
        model=model_path,
        reward_funcs=[lucky, short],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tokenizer,
        rollout_func=rollout,
        callbacks=[gradients],
    )
    captured = {}
    score = trainer._generate_and_score_completions

    def keyed(inputs):
        output = score(inputs)
        shaping = trainer.last_shaping
        keys = gather_object([(x["prompt"], x["place"]) for x in inputs])
        for index, key in enumerate(keys):
            captured[key] = {
                name: float(shaping[name][index])
                for name in ("rewards", "correct", "lengths", "advantages", "kl_weights")
            }
        return output

    trainer._generate_and_score_completions = keyed
    trainer.train()
    if trainer.accelerator.is_main_process:
        result = {"shaping": captured, "gradients": gradients.gradients, "processes": processes}
        torch.save(result, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
