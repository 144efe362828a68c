"""Two processes, a fault on one: every process stops (or retries) together, at once,
with one message naming the process, and a checkpoint; none waits for a collective
timeout."""

import os
import subprocess
import sys
import time

import pytest
import yaml

from apo.checkpoint import list_checkpoints
from apo.tracking import read_metrics
from tests.trainer.conftest import ROOT, tiny_train_config


def launch(
    tmp_path, tiny_path, fault: str, **sections
) -> tuple[subprocess.CompletedProcess, float]:
    """``apo train`` on 2 gloo processes with ``fault`` on process 1; (result, seconds)."""
    base = {
        "rollout": {"group_size": 4, "max_new_tokens": 10},
        "batch": {"prompts_per_step": 4, "prompts_per_update": 4, "micro_batch_size": 4},
        "checkpoint": {"every": 0},
        "logging": {"samples_per_step": 0},
        "training": {"max_steps": 2, "seed": 0},
    }
    config = tiny_train_config(tmp_path / "run", tiny_path, **(base | sections))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "-m", "tests.reliability.process_faults", "train", str(path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env=os.environ | {"APO_PROCESS_FAULT": fault},
    )  # fmt: skip
    return result, time.monotonic() - started


def assert_stopped_together(result, tmp_path, message: str, origin: str | None = "process 1"):
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "apo train: error:" in line]
    assert len(errors) == 1, result.stderr[-3000:]  # one message, from the main process
    assert message in errors[0], errors[0]
    assert origin is None or origin in errors[0]
    # torchrun reports the failed processes with its own traceback; none from apo
    assert "apo/train" not in result.stderr, result.stderr[-3000:]  # trainer.py, training/
    assert "ChildFailedError" in result.stderr  # every process exited with code 3
    # the weights of the last good step, saved by every process together
    assert list_checkpoints(tmp_path / "run" / "checkpoints")
    assert "resume from" in result.stdout


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("oom_update", "out of memory in the update at step 1 (even one sequence"),
        ("oom_generation", "out of memory generating"),
        ("reward_error", "RuntimeError: the reward pool broke"),
    ],
)
def test_a_failure_on_one_process_stops_every_process(tmp_path, tiny_path, fault, message):
    result, seconds = launch(tmp_path, tiny_path, fault)
    assert_stopped_together(result, tmp_path, message)
    assert seconds < 120  # not a collective timeout (30 minutes by default)


@pytest.mark.slow
def test_out_of_memory_on_one_process_is_retried_by_every_process(tmp_path, tiny_path):
    result, _ = launch(tmp_path, tiny_path, "oom_update_above_1")
    assert result.returncode == 0, result.stderr[-3000:]
    # halved together, 4 -> 2 -> 1, warned once each by the main process
    for size in (2, 1):
        assert result.stderr.count(f"retrying with micro-batches of {size};") == 1
    assert [r["step"] for r in read_metrics(tmp_path / "run") if "loss/total" in r] == [1, 2]


@pytest.mark.slow
def test_a_nan_gradient_on_one_process_is_skipped_by_every_process(tmp_path, tiny_path):
    # Averaged over processes, one NaN gradient is NaN everywhere: every process skips
    # the update, and at the limit all stop together with a checkpoint.
    training = {"max_steps": 3, "seed": 0, "max_nonfinite_updates": 2}
    result, _ = launch(tmp_path, tiny_path, "nan", training=training)
    assert_stopped_together(result, tmp_path, "2 updates in a row had a NaN/inf gradient", None)
    assert result.stderr.count("NaN/inf gradient, update skipped (1 in a row") == 1
