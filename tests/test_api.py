"""The Python API: ``apo.train`` and examples/python_api.py, run for real."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import apo
from apo.config import ConfigError, load_config
from apo.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "python_api.py"


def run_python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Python in a child process that imports the same ``apo`` as the tests."""
    source = str(Path(apo.__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=os.environ | {"PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_apo_does_not_import_the_trainer():
    code = "import sys, apo; print(apo.train.__name__, 'torch' in sys.modules)"
    result = run_python("-c", code)
    assert result.stdout.split() == ["train", "False"], result.stderr


@pytest.mark.slow
def test_the_example_trains_with_its_own_reward_and_resumes(tmp_path):
    # The example writes to runs/python_api under its working directory.
    result = run_python(str(EXAMPLE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "python_api"
    assert f"run folder: {Path('runs/python_api')}" in result.stdout

    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(0.0 <= r["reward/brevity_bonus"] <= 1.0 for r in records)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["rewards"]["components"] == [
        {"name": "accuracy", "weight": 1.0},
        {"name": "format", "weight": 0.5},
        {"name": f"{EXAMPLE}:brevity_bonus", "weight": 0.2},
    ]

    # The saved config is plain YAML: a later run loads it and continues at step 5.
    config = load_config(run / "config.yaml", ["training.max_steps=6", f"logging.output_dir={run}"])
    assert apo.train(config, resume=True) == run
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4, 5, 6]
    assert (run / "checkpoints" / "step-00000006").is_dir()


def test_a_bad_config_dict_names_the_key():
    with pytest.raises(ConfigError, match=r"config key 'rollout\.group_sise': unknown key"):
        apo.train(
            {
                "model": {"name_or_path": "tiny"},
                "data": {"path": "data.jsonl"},
                "rollout": {"group_sise": 4},
            }
        )


def test_a_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        apo.train(tmp_path / "missing.yaml")
