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
