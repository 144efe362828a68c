"""Damaged checkpoints: each is named (file and checkpoint) before the model loads,
with the way to resume from the previous one; plain ``--resume`` skips it."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apo.checkpoint import DamagedCheckpoint, list_checkpoints, verify_checkpoint
from apo.trainer import Trainer


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory, tiny_path):
    """A finished 2-step run with a checkpoint after each step (copied per test)."""
    from tests.trainer.conftest import tiny_train_config

    config = tiny_train_config(
        tmp_path_factory.mktemp("damaged") / "run",
        tiny_path,
        training={"max_steps": 2, "seed": 0},
        checkpoint={"every": 1, "keep_last": 2},
    )
    Trainer(config).train()
    return Path(config.logging.output_dir)


@pytest.fixture
def run(two_checkpoints, tmp_path):
    """A copy of the finished run: (run folder, [step 1, step 2] checkpoints)."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(two_checkpoints, copy)
    return copy, list_checkpoints(copy / "checkpoints")


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a stored member: only its CRC can tell
    path.write_bytes(bytes(data))


DAMAGES = {  # name: (file in the checkpoint, damage, what the message says)
    "truncated weights": ("model.safetensors", truncate, "model.safetensors is damaged"),
    "truncated optimizer": ("optimizer.bin", truncate, "optimizer.bin is damaged"),
    "corrupt optimizer": ("optimizer.bin", flip_a_byte, "optimizer.bin is damaged"),
    "corrupt RNG state": ("random_states_0.pkl", flip_a_byte, "random_states_0.pkl is damaged"),
    "missing RNG state": ("random_states_0.pkl", Path.unlink, "random_states_0.pkl is missing"),
    "corrupt trainer state": (
        "trainer_state.json",
        lambda path: path.write_text('{"step": 2, "samp'),
        "trainer_state.json is not valid JSON",
    ),
    "trainer state without the sampler": (
        "trainer_state.json",
        lambda path: path.write_text(json.dumps({"step": 2})),
        "trainer_state.json lacks total_steps, sampler",
    ),
}


@pytest.mark.parametrize("name", DAMAGES)
def test_each_damage_is_named_with_its_file(run, name):
    _, (_, latest) = run
    filename, damage, message = DAMAGES[name]
    damage(latest / filename)
    with pytest.raises(DamagedCheckpoint, match=message):
        verify_checkpoint(latest)


def test_an_intact_checkpoint_passes(run):
    _, checkpoints = run
    for checkpoint in checkpoints:
        verify_checkpoint(checkpoint)


def test_a_named_damaged_checkpoint_is_refused_with_the_previous_one_to_resume(
    run, make_config, monkeypatch
):
    run_dir, (previous, latest) = run
    truncate(latest / "model.safetensors")
    config = make_config(training={"max_steps": 3, "seed": 0}, logging={"output_dir": str(run_dir)})
    loads = []
    monkeypatch.setattr("apo.trainer.load_model", lambda *a, **k: loads.append(1))
    with pytest.raises(ValueError) as caught:
        Trainer(config, resume=str(latest))
    message = str(caught.value)
    assert f"checkpoint {latest} is damaged" in message
    assert "model.safetensors is damaged" in message
    assert f"--resume {previous}" in message and "--resume alone" in message
    assert not loads  # refused before the model loads


def test_plain_resume_falls_back_to_the_previous_checkpoint_with_a_warning(
    run, make_config, caplog
):
    run_dir, (_, latest) = run
    flip_a_byte(latest / "optimizer.bin")
    config = make_config(training={"max_steps": 2, "seed": 0}, logging={"output_dir": str(run_dir)})
    with caplog.at_level(logging.WARNING, logger="apo"):
        trainer = Trainer(config, resume=True)
    try:
        assert trainer.step_index == 1  # the previous checkpoint's step
        assert f"skipping the damaged checkpoint {latest}" in caplog.text
    finally:
        trainer.close()


def test_all_damaged_is_an_error_naming_each(run, make_config):
    run_dir, checkpoints = run
    for checkpoint in checkpoints:
        truncate(checkpoint / "model.safetensors")
    config = make_config(training={"max_steps": 3, "seed": 0}, logging={"output_dir": str(run_dir)})
    with pytest.raises(ValueError, match="no intact checkpoint is left to resume") as caught:
        Trainer(config, resume=True)
    assert all(str(c / "model.safetensors") in str(caught.value) for c in checkpoints)


@pytest.mark.slow
def test_apo_train_names_the_damaged_file_without_a_traceback(run, tmp_path):
    run_dir, (previous, latest) = run
    truncate(latest / "optimizer.bin")
    done = subprocess.run(
        [sys.executable, "-m", "apo.cli", "train", str(run_dir / "config.yaml"),
         "training.max_steps=3", "--output", str(run_dir), "--resume", str(latest)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{latest / 'optimizer.bin'} is damaged" in done.stderr
    assert f"--resume {previous}" in done.stderr


def replace_rng_state(path: Path) -> None:
    """A valid torch archive (its CRCs pass) that holds no RNG state."""
    import torch

    torch.save({"step": 2}, path)


JUNK_STATES = {  # what trainer_state.json says: what the message says
    "step": ({"step": "two"}, "step is 'two', not a count"),
    "sampler": ({"sampler": 5}, "sampler is int, not an object"),
    "sampler position": ({"sampler": {"position": -1}}, "sampler.position is -1"),
    "sampler seed": ({"sampler": {"seed": "0"}}, "sampler.seed is '0', not an integer"),
    "scheduler": ({"scheduler": [1]}, "scheduler is not a learning-rate schedule's state"),
    "config": ({"config": "lr: 1"}, "config is str, not an object"),
}


@pytest.mark.parametrize("name", JUNK_STATES)
def test_junk_values_in_the_trainer_state_are_named(run, name):
    _, (_, latest) = run
    path = latest / "trainer_state.json"
    state = json.loads(path.read_text())
    junk, message = JUNK_STATES[name]
    for key, value in junk.items():
        state[key] = state[key] | value if isinstance(value, dict) else value
    path.write_text(json.dumps(state))
    with pytest.raises(DamagedCheckpoint, match=f"trainer_state.json is damaged: {message}"):
        verify_checkpoint(latest)


def test_an_rng_state_file_without_rng_states_is_named(run, make_config, caplog):
    """accelerate skips an RNG file it cannot restore with an info line: bit-exact
    resume would be lost without a word. Plain --resume takes the previous one."""
    run_dir, (_, latest) = run
    replace_rng_state(latest / "random_states_0.pkl")
    with pytest.raises(DamagedCheckpoint, match=r"random_states_0.pkl is damaged \(KeyError"):
        verify_checkpoint(latest)
    config = make_config(training={"max_steps": 2, "seed": 0}, logging={"output_dir": str(run_dir)})
    with caplog.at_level(logging.WARNING, logger="apo"):
        trainer = Trainer(config, resume=True)
    trainer.close()
    assert trainer.step_index == 1 and f"skipping the damaged checkpoint {latest}" in caplog.text


@pytest.mark.slow
def test_weights_of_another_shape_are_refused_without_a_traceback(run, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    run_dir, (_, latest) = run
    weights = load_file(str(latest / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = torch.zeros(*weights[name].shape[:-1], weights[name].shape[-1] + 1)
    save_file(weights, str(latest / "model.safetensors"), metadata={"format": "pt"})
    done = subprocess.run(
        [sys.executable, "-m", "apo.cli", "train", str(run_dir / "config.yaml"),
         "training.max_steps=3", "--output", str(run_dir), "--resume", str(latest)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"checkpoint {latest} does not fit this model (RuntimeError: " in done.stderr


def test_a_refused_resume_leaves_the_run_config_as_it_was(run, make_config):
    """The data changed (another shuffle order): the resume is refused, and the run's
    config.yaml still describes the run that wrote the checkpoints."""
    run_dir, _ = run
    saved = (run_dir / "config.yaml").read_text()
    config = make_config(
        training={"max_steps": 3, "seed": 0},
        logging={"output_dir": str(run_dir)},
        data={"shuffle": False},
    )
    with pytest.raises(ValueError, match="cannot resume the data order: saved shuffle=True"):
        Trainer(config, resume=True)
    assert (run_dir / "config.yaml").read_text() == saved


def test_a_negative_seed_is_a_valid_trainer_state(run):
    """training.seed may be any integer: a checkpoint of seed -1 is intact."""
    _, (_, latest) = run
    path = latest / "trainer_state.json"
    state = json.loads(path.read_text())
    state["sampler"]["seed"] = -1
    path.write_text(json.dumps(state))
    verify_checkpoint(latest)
