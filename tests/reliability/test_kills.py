"""Hard kills, at random moments and while a checkpoint is being written, then
``--resume``: nothing is lost beyond the last checkpoint, nothing is repeated,
and on CPU the final weights equal those of a run that was never interrupted."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from apo.checkpoint import list_checkpoints
from apo.tracking import read_metrics
from tests.trainer.conftest import ROOT
from tests.trainer.test_distributed_and_cli import apo, config_file

STEPS = 6
SECTIONS = {
    "training": {"max_steps": STEPS, "seed": 1},
    "checkpoint": {"every": 1, "keep_last": 2},
    "logging": {"samples_per_step": 2},
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_path):
    folder = tmp_path_factory.mktemp("uninterrupted")
    result = apo("train", str(config_file(folder, "run", tiny_path, **SECTIONS)))
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "run"


def assert_same_run(expected, got) -> None:
    """Same final weights, every step logged once, the same prompts at every step."""
    want = load_file(str(expected / "final_model" / "model.safetensors"))
    have = load_file(str(got / "final_model" / "model.safetensors"))
    assert all(torch.equal(want[k], have[k]) for k in want)
    assert [r["step"] for r in read_metrics(got)] == list(range(1, STEPS + 1))

    def data_order(run):
        lines = (run / "samples.jsonl").read_text().splitlines()
        return [(s["step"], s["id"], s["response"]) for s in map(json.loads, lines)]

    assert data_order(got) == data_order(expected)


def start(config, *extra, module="apo", fault=None) -> subprocess.Popen:
    """``apo train`` in the background (through the fault runner when ``fault``)."""
    env = os.environ | {"APO_FAULT": fault} if fault else None
    return subprocess.Popen(
        [sys.executable, "-m", module, "train", str(config), *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def wait_for(path, process, timeout=120.0) -> bool:
    """Until ``path`` exists (False if the process ended first)."""
    deadline = time.monotonic() + timeout
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.exists()


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path, tiny_path, uninterrupted):
    """Killed at a random moment (first while loading, then at random points of the
    training: generating, updating, writing a checkpoint or a log line), resumed,
    killed again... until a run completes."""
    config = config_file(tmp_path, "run", tiny_path, **SECTIONS)
    run = tmp_path / "run"
    rng = random.Random(20261123)
    kills = []
    for attempt in range(6):
        (run / "config.yaml").unlink(missing_ok=True)
        process = start(config, *(["--resume"] if attempt else []))
        if attempt == 0:
            delay = rng.uniform(0.5, 3.0)  # still importing / loading
        else:  # config.yaml is written just before the first step
            wait_for(run / "config.yaml", process)
            delay = rng.uniform(0.0, 2.5)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=60)
            saved = [int(p.name[5:]) for p in list_checkpoints(run / "checkpoints")]
            kills.append(
                f"attempt {attempt}: +{delay:.1f} s, last checkpoint {max(saved, default=0)}"
            )
            continue
        assert process.returncode == 0
        break
    else:
        result = apo("train", str(config), "--resume")
        assert result.returncode == 0, result.stderr[-2000:]
    print("kills:", "; ".join(kills))
    assert len(kills) >= 2, kills  # with this seed, several land on this machine
    assert_same_run(uninterrupted, run)


@pytest.mark.parametrize("fault", ["kill_mid_write", "kill_before_rename"])
@pytest.mark.slow
def test_kill_while_writing_a_checkpoint(tmp_path, tiny_path, uninterrupted, fault):
    config = config_file(tmp_path, "run", tiny_path, **SECTIONS)
    process = start(config, module="tests.reliability.faults", fault=f"{fault}:3")
    assert process.wait(timeout=300) == -signal.SIGKILL
    folder = tmp_path / "run" / "checkpoints"
    assert (folder / ".tmp-step-00000003").is_dir()  # the half-written one is there...
    assert [p.name for p in list_checkpoints(folder)] == ["step-00000001", "step-00000002"]

    resumed = apo("train", str(config), "--resume")  # ...and never picked
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {folder / 'step-00000002'} at step 2" in resumed.stderr
    assert not (folder / ".tmp-step-00000003").exists()
    assert_same_run(uninterrupted, tmp_path / "run")


@pytest.mark.slow
def test_a_failed_checkpoint_write_keeps_the_last_good_one(tmp_path, tiny_path, uninterrupted):
    """Disk full while writing step 3: exit code 3, a message naming the intact
    checkpoint, nothing half-written left; resuming later loses nothing."""
    config = config_file(tmp_path, "run", tiny_path, **SECTIONS)
    failed = subprocess.run(
        [sys.executable, "-m", "tests.reliability.faults", "train", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"APO_FAULT": "disk_full:3"},
    )
    folder = tmp_path / "run" / "checkpoints"
    assert failed.returncode == 3, failed.stderr[-2000:]
    assert "could not write the checkpoint of step 3" in failed.stderr
    assert "No space left on device" in failed.stderr
    assert f"the last good checkpoint, {folder / 'step-00000002'}, is intact" in failed.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000001", "step-00000002"]
    resumed = apo("train", str(config), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(uninterrupted, tmp_path / "run")


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a filesystem of its own (a tmpfs) whose size the test sets:
    ``resize(bytes)`` mounts or remounts it. Needs root (CI and the dev machine
    run as root); skipped, saying so, where mounting is not allowed."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = False

    def resize(size: int) -> Path:
        nonlocal mounted
        options = f"size={size}" + (",remount" if mounted else "")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted = True
        return folder

    yield resize
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_really_full_disk_stops_the_run_with_its_last_checkpoint(
    small_disk, tiny_path, uninterrupted
):
    """The disk really fills up while step 3 is saved (torch and safetensors then
    raise RuntimeError and SafetensorError, not OSError): exit 3, one message that
    names the full disk and the intact checkpoint, no half-written folder; with
    space again, --resume reproduces the uninterrupted run bit for bit."""
    checkpoint = sum(
        f.stat().st_size for f in (uninterrupted / "checkpoints" / "step-00000006").rglob("*")
    )
    disk = small_disk(int(2.6 * checkpoint))  # keep_last 2: the third one cannot fit
    config = config_file(disk, "run", tiny_path, **SECTIONS)
    failed = apo("train", str(config))
    folder = disk / "run" / "checkpoints"
    assert failed.returncode == 3, failed.stderr[-2000:]
    assert "Traceback" not in failed.stderr
    assert "could not write the checkpoint of step 3" in failed.stderr
    assert "No space left on device" in failed.stderr
    assert f"the last good checkpoint, {folder / 'step-00000002'}, is intact" in failed.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000001", "step-00000002"]

    small_disk(10 * checkpoint)
    resumed = apo("train", str(config), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(uninterrupted, disk / "run")
