from pathlib import Path

import pytest

from apo.config import TrainConfig, merge

ROOT = Path(__file__).resolve().parents[2]
VARIED = ROOT / "tests" / "trainer" / "varied_rewards.py"


def tiny_train_config(output_dir, tiny_path, **sections) -> TrainConfig:
    """A few-second run on the tiny model and the example data."""
    base = {
        "model": {"name_or_path": tiny_path},
        "data": {
            "path": str(ROOT / "examples" / "data" / "plain.jsonl"),
            "max_prompt_length": 1024,
        },
        "rollout": {"group_size": 4, "max_new_tokens": 12},
        "rewards": {
            "components": [{"name": f"{VARIED}:many_es"}, {"name": "format", "weight": 0.5}],
            "correctness": "many_es",
            "num_workers": 1,
        },
        "optim": {"lr": 1e-3, "warmup_ratio": 0.0},
        "batch": {"prompts_per_step": 2, "prompts_per_update": 2, "micro_batch_size": 4},
        "training": {"max_steps": 2, "seed": 0},
        "logging": {"output_dir": str(output_dir), "samples_per_step": 2},
        "checkpoint": {"every": 1, "keep_last": 2},
    }
    return TrainConfig.model_validate(merge(base, sections))


@pytest.fixture
def make_config(tmp_path, tiny_path):
    def make(name="run", **sections):
        return tiny_train_config(tmp_path / name, tiny_path, **sections)

    return make


def favour_end_token(trainer, bias: float = 4.0) -> None:
    """Make the untrained model stop early now and then, so lengths vary."""
    from apo.models import unwrap_model

    model = unwrap_model(trainer.policy)
    eos = trainer.tokenizer.eos_token_id

    def hook(module, args, logits):
        logits[..., eos] += bias
        return logits

    model.get_output_embeddings().register_forward_hook(hook)
