"""The disk: too little space, failed writes, other runs' files, cut-off log lines."""

import errno
import json
import logging
import os
from collections import namedtuple
from pathlib import Path

import pytest

from apo.checkpoint import CheckpointError, list_checkpoints, save_checkpoint
from apo.tracking import read_metrics
from apo.trainer import Trainer
from tests.test_checkpoint import FakeAccelerator

Usage = namedtuple("Usage", "total used free")


def test_too_little_space_for_one_checkpoint_fails_before_training(make_config, monkeypatch):
    monkeypatch.setattr("apo.checkpoint.shutil.disk_usage", lambda path: Usage(10, 9, 2**20))
    trainer = Trainer(make_config())
    with pytest.raises(CheckpointError, match=r"one needs about \d+ MB, 1 MB are free"):
        trainer.train()
    assert not (trainer.run_dir / "metrics.jsonl").exists()  # no step was run


def test_space_for_fewer_than_keep_last_checkpoints_is_a_warning(make_config, monkeypatch, caplog):
    trainer = Trainer(make_config(training={"max_steps": 1, "seed": 0}))
    needed = trainer._checkpoint_bytes()
    free = int(needed * 1.5)  # one fits, keep_last + 1 = 3 do not
    monkeypatch.setattr("apo.checkpoint.shutil.disk_usage", lambda path: Usage(free, 0, free))
    with caplog.at_level(logging.WARNING, logger="apo"):
        trainer.train()
    assert "3 checkpoints of about" in caplog.text and "will not fit" in caplog.text


class FailingAccelerator(FakeAccelerator):
    def __init__(self, fail_at: str):
        super().__init__()
        self.fail_at = fail_at

    def save_state(self, directory, safe_serialization=True):
        super().save_state(directory, safe_serialization)
        if self.fail_at == "save_state":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_write_leaves_the_previous_checkpoints_alone(tmp_path):
    save_checkpoint(FakeAccelerator(), tmp_path, 1, {"step": 1}, keep_last=1)
    with pytest.raises(CheckpointError, match=r"step 2 .*No space left on device.*step-00000001"):
        save_checkpoint(FailingAccelerator("save_state"), tmp_path, 2, {"step": 2}, keep_last=1)
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]  # not pruned, no leftovers


def test_a_failed_rename_over_the_same_step_restores_it(tmp_path, monkeypatch):
    save_checkpoint(FakeAccelerator(), tmp_path, 1, {"step": 1, "try": 1}, keep_last=1)
    rename = type(tmp_path).rename

    def failing_rename(self, target):
        if self.name.startswith(".tmp-"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return rename(self, target)

    monkeypatch.setattr(type(tmp_path), "rename", failing_rename)
    with pytest.raises(CheckpointError, match="Input/output error"):
        save_checkpoint(FakeAccelerator(), tmp_path, 1, {"step": 1, "try": 2}, keep_last=1)
    [checkpoint] = list_checkpoints(tmp_path)
    assert json.loads((checkpoint / "trainer_state.json").read_text())["try"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]


def test_a_fresh_run_refuses_a_folder_with_checkpoints(make_config):
    config = make_config(training={"max_steps": 1, "seed": 0})
    Trainer(config).train()
    with pytest.raises(ValueError, match=r"holds an earlier run \(config.yaml, .*checkpoints/"):
        Trainer(config)


@pytest.mark.slow
def test_resuming_drops_a_log_line_cut_short_by_a_kill(make_config):
    config = make_config(training={"max_steps": 2, "seed": 0}, checkpoint={"every": 1})
    Trainer(make_config(training={"max_steps": 1, "seed": 0})).train()
    metrics = Path(config.logging.output_dir) / "metrics.jsonl"
    with metrics.open("a") as handle:
        handle.write('{"step": 2, "reward/tot')  # killed mid-line
    Trainer(config, resume=True).train()
    assert [record["step"] for record in read_metrics(metrics.parent)] == [1, 2]


def test_a_fresh_start_drops_the_records_of_a_run_that_never_saved(make_config):
    config = make_config(training={"max_steps": 1, "seed": 0})
    metrics = Path(config.logging.output_dir) / "metrics.jsonl"
    metrics.parent.mkdir()
    # its start evaluation (step 0) too: the new run measures its own
    metrics.write_text(
        '{"step": 0, "eval/x/accuracy": 0.5}\n{"step": 1, "reward/total": 0.5}\n{"step": 2, "rew'
    )
    Trainer(config, resume=True).train()  # --resume without a checkpoint: from scratch
    [record] = read_metrics(metrics.parent)
    assert record["step"] == 1 and "time/step" in record  # this run's, not the planted one


def test_resuming_loads_no_pickle_with_code(make_config, monkeypatch):
    """Every checkpoint file read on resume goes through safetensors or through
    ``torch.load(..., weights_only=True)``, which refuses pickled code."""
    import torch

    config = make_config(training={"max_steps": 1, "seed": 0})
    Trainer(config).train()
    calls = []
    load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    Trainer(config, resume=True).close()
    assert calls and all(flag is True for flag in calls), calls
    checkpoint = list_checkpoints(Path(config.logging.output_dir) / "checkpoints")[-1]
    assert (checkpoint / "model.safetensors").is_file()


class TorchFullDiskAccelerator(FakeAccelerator):
    """Fails as torch.save does on a full disk: RuntimeError, no errno."""

    def save_state(self, directory, safe_serialization=True):
        super().save_state(directory, safe_serialization)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


def test_a_full_disk_is_named_whatever_the_serialiser_raises(tmp_path, monkeypatch):
    save_checkpoint(FakeAccelerator(), tmp_path, 1, {"step": 1}, keep_last=1)
    monkeypatch.setattr("apo.checkpoint.shutil.disk_usage", lambda path: Usage(10, 10, 0))
    with pytest.raises(CheckpointError, match=r"step 2 .*No space left on device \(0 bytes free"):
        save_checkpoint(TorchFullDiskAccelerator(), tmp_path, 2, {"step": 2}, keep_last=1)
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]


def test_another_serialiser_error_is_reported_as_it_is(tmp_path):
    with pytest.raises(CheckpointError, match=r"RuntimeError: \[enforce fail.*no earlier"):
        save_checkpoint(TorchFullDiskAccelerator(), tmp_path, 1, {"step": 1}, keep_last=1)
    assert list(tmp_path.iterdir()) == []


def test_a_final_model_that_cannot_be_written_leaves_the_checkpoint(make_config, monkeypatch):
    """The final model is written under a temporary name: a full disk leaves no
    partial folder, the error names the intact checkpoint and how to export it."""
    config = make_config(training={"max_steps": 1, "seed": 0})
    trainer = Trainer(config)

    def full_disk(self, folder, **kwargs):
        (Path(folder) / "model.safetensors").parent.mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(
        type(trainer.accelerator.unwrap_model(trainer.policy)), "save_pretrained", full_disk
    )
    checkpoint = trainer.run_dir / "checkpoints" / "step-00000001"
    with pytest.raises(
        CheckpointError, match=rf"final_model: .*No space left.*{checkpoint} is intact"
    ):
        trainer.train()
    assert sorted(p.name for p in trainer.run_dir.iterdir() if "final" in p.name) == []
    assert list_checkpoints(checkpoint.parent) == [checkpoint]
