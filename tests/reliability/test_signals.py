"""Signals: a second SIGINT stops at once, cleanly; one run per folder."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from apo.checkpoint import list_checkpoints
from apo.run_folder import run_lock
from apo.tracking import read_metrics
from tests.trainer.conftest import ROOT


def start_training(tmp_path, make_config, new_group=False, **sections):
    """``apo train`` in the background; ``new_group``: as a shell starts it, the
    leader of a process group (of its reward workers too), so that a signal can go
    to the whole group."""
    config = make_config(**sections)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    process = subprocess.Popen(
        [sys.executable, "-m", "apo", "train", str(path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=new_group,
    )  # fmt: skip
    return process, tmp_path / "run"


def wait_for_first_step(run, process, timeout=120.0):
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while not (metrics.exists() and metrics.read_text().strip()):
        assert process.poll() is None and time.monotonic() < deadline, "no step was logged"
        time.sleep(0.1)


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_run_folder_in_use_is_refused_before_anything_loads(tmp_path, make_config):
    with run_lock(tmp_path / "run", "apo train first.yaml"):
        process, run = start_training(tmp_path, make_config)
        _out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err[-2000:]
    assert "is in use by another apo run" in err and "apo train first.yaml" in err
    assert "Traceback" not in err and not (run / "metrics.jsonl").exists()


@pytest.mark.slow
def test_stale_temporary_checkpoints_are_removed_at_the_next_start(tmp_path, make_config):
    stale = tmp_path / "run" / "checkpoints" / ".tmp-step-00000007"
    stale.mkdir(parents=True)
    process, _run = start_training(tmp_path, make_config)
    _out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    assert not stale.exists() and "removed unfinished checkpoint folders" in err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.slow
def test_a_signal_to_the_whole_process_group_finishes_the_step_and_saves(
    tmp_path, make_config, sig, code
):
    """What a terminal's Ctrl-C, `timeout`, `kill -- -PGID` and container runtimes
    send reaches the reward workers too: they must not die under the trainer,
    whose step finishes with every reward scored, then the checkpoint."""
    process, run = start_training(
        tmp_path,
        make_config,
        new_group=True,
        training={"max_steps": 500, "seed": 0},
        rewards={"num_workers": 2},
        logging={"samples_per_step": 64},
    )
    wait_for_first_step(run, process)
    os.killpg(process.pid, sig)
    out, err = process.communicate(timeout=180)
    assert process.returncode == code, err[-3000:]
    assert "Traceback" not in err and "Unexpected error" not in err, err[-3000:]
    assert "checkpoint saved" in out
    checkpoint = list_checkpoints(run / "checkpoints")[-1]
    last = read_metrics(run)[-1]
    assert checkpoint.name == f"step-{last['step']:08d}"
    assert not any(v for k, v in last.items() if k.startswith("reward/") and "errors" in k), last
