"""Train from Python, with a reward function of your own.

    python examples/python_api.py

A few steps of APO on the demo's tiny vision-language model and the example
data, on CPU, offline, in about a minute. The run folder is runs/python_api.
"""

from pathlib import Path

import apo
from apo.config import TrainConfig
from apo.demo.settings import start_model_path
from apo.rewards import RewardComponentConfig, RewardConfig
from apo.tracking import read_metrics

DATA = Path(__file__).resolve().parent / "data" / "plain.jsonl"


def brevity_bonus(response: str, answer: str, **info) -> float:
    """1 for an empty response, down to 0 at 200 characters and beyond.

    Rewards run in worker processes, which import this function by name: define
    reward functions at the top level of a module or script, never as lambdas.
    """
    return max(0.0, 1.0 - len(response) / 200)


def build_config(output_dir: str = "runs/python_api") -> TrainConfig:
    # Sections are config objects or plain dicts, as in a YAML config file.
    return TrainConfig(
        model={"name_or_path": str(start_model_path())},
        # The demo model was trained without a system prompt.
        data={"path": str(DATA), "prompt": {"system_prompt": None}},
        rollout={"group_size": 4, "max_new_tokens": 64},
        rewards=RewardConfig(
            components=[
                "accuracy",
                RewardComponentConfig(name="format", weight=0.5),
                RewardComponentConfig(name=brevity_bonus, weight=0.2),
            ],
            num_workers=1,
        ),
        algorithm={"beta": 0.04},  # the demo's KL coefficient
        optim={"lr": 5e-5, "warmup_ratio": 0.0},
        batch={"prompts_per_step": 2, "prompts_per_update": 2, "micro_batch_size": 8},
        training={"max_steps": 4, "seed": 0},
        logging={"output_dir": output_dir, "samples_per_step": 2},
        checkpoint={"every": 2, "keep_last": 2},
    )


# The guard matters: reward workers re-import this script to find brevity_bonus.
if __name__ == "__main__":
    run = apo.train(build_config())  # resume=True continues from the latest checkpoint
    last = read_metrics(run)[-1]
    print(
        f"step {last['step']}: reward {last['reward/total']:.3f}, "
        f"brevity bonus {last['reward/brevity_bonus']:.3f}; run folder: {run}"
    )
