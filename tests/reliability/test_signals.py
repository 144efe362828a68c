"""Signals: a second SIGINT stops at once, cleanly; one run per folder."""

import signal
import subprocess
import sys
import time

import yaml

from apo.checkpoint import list_checkpoints
from apo.run_folder import run_lock
from tests.trainer.conftest import ROOT


def start_training(tmp_path, make_config, **sections):
    config = make_config(**sections)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    process = subprocess.Popen(
        [sys.executable, "-m", "apo", "train", str(path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return process, tmp_path / "run"


def wait_for_first_step(run, process, timeout=120.0):
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while not (metrics.exists() and metrics.read_text().strip()):
        assert process.poll() is None and time.monotonic() < deadline, "no step was logged"
        time.sleep(0.1)


def test_a_second_sigint_stops_at_once_without_traceback_or_temporary_folder(tmp_path, make_config):
    process, run = start_training(
        tmp_path, make_config, training={"max_steps": 500, "seed": 0}, checkpoint={"every": 1}
    )
    wait_for_first_step(run, process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    # Usually the second signal lands mid-step; when the first lands at a step's
    # end, that stop (and its checkpoint) is done within the 50 ms, and the second
    # signal, arriving while the trainer closes, is ignored.
    assert "stopped at once by a second signal" in out or "checkpoint saved" in out
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert list_checkpoints(run / "checkpoints")  # the earlier checkpoints stay


def test_a_run_folder_in_use_is_refused_before_anything_loads(tmp_path, make_config):
    with run_lock(tmp_path / "run", "apo train first.yaml"):
        process, run = start_training(tmp_path, make_config)
        _out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err[-2000:]
    assert "is in use by another apo run" in err and "apo train first.yaml" in err
    assert "Traceback" not in err and not (run / "metrics.jsonl").exists()


def test_stale_temporary_checkpoints_are_removed_at_the_next_start(tmp_path, make_config):
    stale = tmp_path / "run" / "checkpoints" / ".tmp-step-00000007"
    stale.mkdir(parents=True)
    process, _run = start_training(tmp_path, make_config)
    _out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    assert not stale.exists() and "removed unfinished checkpoint folders" in err
