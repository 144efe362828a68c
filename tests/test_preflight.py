"""Checks made before the model loads: optional trackers, resuming a checkpoint
saved with paths spelled otherwise, a fresh run in a folder of an earlier run."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from apo.config import TrainConfig
from apo.preflight import check_inputs_exist, check_resumable, claim_run_folder
from apo.run_folder import RunFolderBusy
from apo.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb"])
def test_a_missing_tracker_is_named_before_the_model_loads(make_config, monkeypatch, tracker):
    real_find_spec = __import__("importlib.util").util.find_spec
    monkeypatch.setattr(
        "apo.preflight.importlib.util.find_spec",
        lambda name, *a: None if name == tracker else real_find_spec(name, *a),
    )
    loads = []
    monkeypatch.setattr("apo.trainer.load_model", lambda *a, **k: loads.append(1))
    with pytest.raises(ValueError, match=f"logging.{tracker} is on but {tracker} is not installed"):
        Trainer(make_config(logging={tracker: True}))
    assert not loads


def test_a_path_saved_relative_to_the_current_folder_names_the_same_model(
    tmp_path, monkeypatch, caplog
):
    """Checkpoints saved before paths were config-relative hold them as typed."""
    for folder in ("base", "other"):
        (tmp_path / folder).mkdir()
    (tmp_path / "train.jsonl").write_text("")
    monkeypatch.chdir(tmp_path)
    config = TrainConfig.model_validate(
        {
            "model": {"name_or_path": str(tmp_path / "base")},
            "data": {"path": str(tmp_path / "train.jsonl")},
        }
    )
    saved = config.model_dump(mode="json")
    saved["model"]["name_or_path"], saved["data"]["path"] = "base", "train.jsonl"
    with caplog.at_level("WARNING", logger="apo"):
        check_resumable(tmp_path, saved, config, warn=True)
    assert not caplog.records
    saved["model"]["name_or_path"] = "other"
    with pytest.raises(ValueError, match="belongs to another model"):
        check_resumable(tmp_path, saved, config, warn=True)


def earlier_run(folder):
    """What a crashed run leaves: its config and metrics, no checkpoint; and a note."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("theirs\n")
    (folder / "metrics.jsonl").write_text('{"step": 1}\n')
    (folder / "checkpoints").mkdir()  # empty: pruned, or never written
    (folder / "notes.txt").write_text("mine\n")
    return folder


def test_a_fresh_run_refuses_a_folder_holding_an_earlier_run_and_says_the_ways_out(make_config):
    config = make_config()
    run = earlier_run(Path(config.logging.output_dir))
    with pytest.raises(ValueError) as error:
        check_inputs_exist(config, resume=None)
    message = str(error.value)
    assert "holds an earlier run (config.yaml, metrics.jsonl)" in message
    for way_out in ("--resume", "another folder (--output DIR)", "--overwrite"):
        assert way_out in message
    assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'
    check_inputs_exist(config, resume=True)  # continuing it is fine
    check_inputs_exist(make_config(logging={"overwrite": True}), resume=None)


def test_a_folder_of_other_files_is_no_earlier_run(make_config):
    config = make_config()
    Path(config.logging.output_dir).mkdir()
    (Path(config.logging.output_dir) / "notes.txt").write_text("mine\n")
    check_inputs_exist(config, resume=None)


def test_overwrite_deletes_the_earlier_runs_files_only_and_under_the_lock(tmp_path):
    run = earlier_run(tmp_path / "run")
    (run / "checkpoints" / "step-00000001").mkdir()
    with claim_run_folder(run, overwrite=True):
        assert sorted(p.name for p in run.iterdir()) == [".apo-lock", "notes.txt"]
    assert [p.name for p in run.iterdir()] == ["notes.txt"]
    busy = earlier_run(tmp_path / "busy")  # another live process holds it
    owner = {"pid": 1, "host": socket.gethostname(), "command": "apo train"}
    (busy / ".apo-lock").write_text(json.dumps(owner))
    with pytest.raises(RunFolderBusy, match="in use by another apo run"):
        claim_run_folder(busy, overwrite=True)
    assert (busy / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_apo_train_refuses_an_earlier_runs_folder_in_one_line(tmp_path):
    run = earlier_run(tmp_path / "runs" / "crashed")
    config = tmp_path / "config.yaml"
    data = ROOT / "examples" / "data" / "plain.jsonl"
    config.write_text(
        f"model: {{name_or_path: tiny}}\ndata: {{path: {data}}}\n"
        "logging: {output_dir: runs/crashed}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "apo", "train", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("apo train: error: runs/crashed (logging.output_dir) holds")
    assert "--overwrite" in result.stderr
    assert (run / "config.yaml").read_text() == "theirs\n"


def test_a_file_of_a_moved_run_folder_is_the_same_setting(tmp_path, monkeypatch, caplog):
    """Saved while the run folder was runs/a (relative to another working folder); the
    folder has moved to archive/b since, its data with it."""
    moved = tmp_path / "archive" / "b"
    (moved / "data").mkdir(parents=True)
    (moved / "data" / "train.jsonl").write_text("")
    monkeypatch.chdir(tmp_path)
    config = TrainConfig.model_validate(
        {
            "model": {"name_or_path": "tiny"},
            "data": {"path": str(moved / "data" / "train.jsonl")},
            "logging": {"output_dir": str(moved)},
        }
    )
    saved = config.model_dump(mode="json")
    saved["data"]["path"] = "/gone/project/runs/a/data/train.jsonl"
    saved["logging"]["output_dir"] = "runs/a"
    with caplog.at_level("WARNING", logger="apo"):
        check_resumable(moved, saved, config, warn=True)
    assert not caplog.records
    saved["data"]["path"] = "/gone/project/runs/a/data/other.jsonl"
    with caplog.at_level("WARNING", logger="apo"):
        check_resumable(moved, saved, config, warn=True)
    assert "data.path" in caplog.text
