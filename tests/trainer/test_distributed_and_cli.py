"""The command line as a user runs it: two processes, signals, config errors."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from apo.checkpoint import list_checkpoints
from apo.config import TrainConfig, load_config, reference_yaml
from apo.tracking import read_metrics
from tests.trainer.conftest import ROOT, tiny_train_config


def config_file(tmp_path: Path, run: str, tiny_path: str, **sections) -> Path:
    """A tiny-run config written to ``<tmp>/<run>.yaml``, its run folder ``<tmp>/<run>``."""
    config = tiny_train_config(tmp_path / run, tiny_path, **sections)
    path = tmp_path / f"{run}.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def apo(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apo", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("max_tokens", "share", "variant"),
    [
        (None, False, None),
        (150, False, None),
        (150, True, None),
        (None, False, "dynamic"),
        (None, False, "overlong"),
        (None, False, "importance"),
    ],
    ids=["rows", "token-budget", "shared-prompts", "dynamic-sampling", "overlong", "importance"],
)
@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(
    tmp_path, tiny_path, max_tokens, share, variant
):
    # With a token budget each process cuts its rows into its own number of
    # micro-batches, and they must agree on a common count. Shared prompts call
    # the DDP-wrapped model twice (prompts, then responses) before one backward.
    # Dynamic sampling selects the groups of all processes' rounds: the same ones.
    # The overlong punishment and filter: answers stopped at an "e" are not cut.
    dynamic, overlong = variant == "dynamic", variant == "overlong"
    sections = {
        "rollout": {
            "group_size": 2 if dynamic else 4,
            "max_new_tokens": 10,
            "seed_per_prompt": True,
            "dynamic_sampling": dynamic,
            "dynamic_sampling_max_rounds": 3,
            "stop_strings": ["e"] if overlong else [],
        },
        "rewards": {"overlong_buffer": 6 if overlong else 0},
        "algorithm": {
            "overlong_filter": overlong,
            "importance_sampling": "truncate" if variant == "importance" else "off",
        },
        "batch": {
            "prompts_per_step": 4,
            "prompts_per_update": 2,
            "micro_batch_size": 3,
            "max_tokens_per_micro_batch": max_tokens,
            "share_prompts": share,
        },
        "checkpoint": {"every": 0},
        "logging": {"samples_per_step": 0},
        "training": {"max_steps": 2, "seed": 3},
    }
    single = config_file(tmp_path, "one", tiny_path, **sections)
    double = config_file(tmp_path, "two", tiny_path, **sections)
    assert apo("train", str(single)).returncode == 0
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "-m",
            "apo",
            "train",
            str(double),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]

    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    if dynamic:
        assert any(r["dynamic_sampling/rounds"] > 1 for r in one)
    if overlong:
        assert all(0 < r["length/truncated_frac"] < 1 and r["reward/overlong"] < 0 for r in one)
    if variant == "importance":  # the image placeholders the engine never samples
        assert all(r["importance/logp_abs_diff"] > 0 for r in one)
    for a, b in zip(one, two, strict=True):
        assert a["reward/total"] == b["reward/total"]  # the same responses, whatever the layout
        assert a.get("dynamic_sampling/rounds") == b.get("dynamic_sampling/rounds")
        assert a["loss/total"] == pytest.approx(b["loss/total"], rel=1e-4, abs=1e-6)
        assert a["optim/grad_norm"] == pytest.approx(b["optim/grad_norm"], rel=1e-4)
    base = load_file(f"{tiny_path}/model.safetensors")
    w1 = load_file(str(tmp_path / "one" / "final_model" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "final_model" / "model.safetensors"))
    moved = max((w1[k] - base[k]).abs().max().item() for k in w1)
    apart = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert moved > 1e-3
    # float sums in another order; Adam's normalisation can enlarge the tiniest
    # gradient differences, hence a tolerance of a few percent of the update
    assert apart < 0.05 * moved


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.slow
def test_a_signal_saves_a_checkpoint_and_exits_with_its_code(tmp_path, tiny_path, signum, code):
    path = config_file(
        tmp_path, "run", tiny_path, training={"max_steps": 500, "seed": 0}, checkpoint={"every": 0}
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "apo", "train", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == code, err[-2000:]
    assert "checkpoint saved" in out
    checkpoints = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert checkpoints and int(checkpoints[-1].name.split("-")[1]) == len(
        read_metrics(tmp_path / "run")
    )


def test_unknown_key_names_the_key_and_the_allowed_ones():
    result = apo("train", "configs/tiny.yaml", "algorithm.betta=0.1")
    assert result.returncode == 2
    assert "config key 'algorithm.betta': unknown key; allowed: advantage" in result.stderr
    assert "beta" in result.stderr and "Traceback" not in result.stderr


def test_bad_value_names_the_allowed_values():
    result = apo("train", "configs/tiny.yaml", "data.on_error=maybe")
    assert result.returncode == 2
    assert "config key 'data.on_error': Input should be 'raise' or 'skip'" in result.stderr


@pytest.mark.slow
def test_rules_across_sections_fail_before_loading():
    result = apo("train", "configs/tiny.yaml", "batch.prompts_per_update=3")
    assert result.returncode == 2 and "must divide batch.prompts_per_step=2" in result.stderr
    result = apo("train", "configs/tiny.yaml", "data.path=/no/such.jsonl")
    assert result.returncode == 2 and "/no/such.jsonl: no such file or folder" in result.stderr
    result = apo(
        "train",
        "configs/tiny.yaml",
        "rewards.components=[{name: nowhere.py:f}]",
        "rewards.correctness=f",
    )
    assert result.returncode == 2 and "no such file" in result.stderr


def test_overrides_and_print_config():
    result = apo(
        "train",
        "configs/tiny.yaml",
        "algorithm.beta=0.01",
        "rollout.stop_strings=[</answer>]",
        "--output",
        "/tmp/elsewhere",
        "--print-config",
    )
    assert result.returncode == 0
    printed = yaml.safe_load(result.stdout)
    assert printed["algorithm"]["beta"] == 0.01
    assert printed["rollout"]["stop_strings"] == ["</answer>"]
    assert printed["logging"]["output_dir"] == "/tmp/elsewhere"


def test_help_lists_the_options():
    result = apo("train", "--help")
    assert result.returncode == 0 and "--resume" in result.stdout and "overrides" in result.stdout


def test_an_override_right_after_resume_is_read_as_an_override():
    result = apo("train", "configs/tiny.yaml", "--resume", "training.max_steps=5", "--print-config")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["training"]["max_steps"] == 5


def test_reference_config_is_up_to_date():
    assert (ROOT / "configs" / "reference.yaml").read_text() == reference_yaml()


def test_shipped_configs_are_valid():
    view_r1 = load_config(ROOT / "configs" / "view-r1-3b.yaml", ["data.path=train.jsonl"])
    assert view_r1.algorithm.dads and view_r1.algorithm.stcr
    assert view_r1.algorithm.beta == 1e-3 and view_r1.optim.lr == 1e-6
    assert view_r1.batch.prompts_per_step == 128 and view_r1.rollout.group_size == 8
    assert view_r1.rollout.max_new_tokens == 4096 and view_r1.optim.betas == (0.9, 0.95)
    tiny = load_config(ROOT / "configs" / "tiny.yaml")
    assert tiny.model.name_or_path == "tiny"
    reference = yaml.safe_load((ROOT / "configs" / "reference.yaml").read_text())
    assert set(reference) == set(TrainConfig.model_fields)


@pytest.mark.slow
def test_tiny_config_trains_from_the_command_line(tmp_path):
    result = apo(
        "train",
        "configs/tiny.yaml",
        "training.max_steps=2",
        "checkpoint.every=1",
        "--output",
        str(tmp_path / "run"),
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained model:" in result.stdout
    assert len(read_metrics(tmp_path / "run")) == 2
    # quiet: no library noise at each save, no bar per weight load, no source-file suffix
    output = result.stdout + result.stderr
    assert "Removed shared tensor" not in output and "Loading weights" not in output
    assert "Writing model shards" not in output and "progress.py:" not in output


@pytest.mark.slow
def test_an_unwritable_run_folder_fails_before_loading(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = apo("train", "configs/tiny.yaml", "--output", str(blocker / "run"))
    assert result.returncode == 2
    assert "(logging.output_dir) is not writable" in result.stderr


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_path):
    """A hard kill loses at most the steps since the last checkpoint; resuming from it
    reproduces the uninterrupted run exactly (CPU, same seed)."""
    sections = {
        "training": {"max_steps": 6, "seed": 1},
        "checkpoint": {"every": 1, "keep_last": 2},
        "logging": {"samples_per_step": 0},
    }
    straight = config_file(tmp_path, "a", tiny_path, **sections)
    killed = config_file(tmp_path, "b", tiny_path, **sections)
    assert apo("train", str(straight)).returncode == 0

    process = subprocess.Popen(
        [sys.executable, "-m", "apo", "train", str(killed)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while len(list_checkpoints(tmp_path / "b" / "checkpoints")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()  # SIGKILL: no handler runs, a checkpoint may be half written
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    done = int(list_checkpoints(tmp_path / "b" / "checkpoints")[-1].name.split("-")[1])
    assert 2 <= done < 6

    resumed = apo("train", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = load_file(str(tmp_path / "a" / "final_model" / "model.safetensors"))
    got = load_file(str(tmp_path / "b" / "final_model" / "model.safetensors"))
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert [r["step"] for r in read_metrics(tmp_path / "b")] == list(range(1, 7))
