"""scripts/real_model.py reuses a finished run's start evaluation only where that run
measured what this one would (no model needed: the check reads files)."""

import importlib.util
import json

import pytest

from apo.config import config_to_yaml
from tests.trainer.conftest import ROOT

SCRIPT = ROOT / "scripts" / "real_model.py"
START = {"step": 0, "eval/test/accuracy": 0.35, "eval/other/accuracy": 0.135}


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("real_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def a_run(script, folder, *flags: str):
    """The config of a run of the script in ``folder`` (its data files written), and
    the folder saved as a finished run: config.yaml and a start evaluation."""
    args = script.parse_args(["--quick", "--output", str(folder), *flags])
    config = script.train_config(args, script.write_data(folder / "data", args))
    (folder / "config.yaml").write_text(config_to_yaml(config))
    (folder / "metrics.jsonl").write_text(json.dumps(START) + "\n")
    return config


def test_a_start_evaluation_is_reused_by_a_longer_run_in_another_folder(script, tmp_path):
    a_run(script, tmp_path / "first")
    config = a_run(script, tmp_path / "second", "--steps", "7", "--lr", "1e-4")
    reused = script.reused_start_evaluation(tmp_path / "first", config)
    assert reused == {k: v for k, v in START.items() if k != "step"}


@pytest.mark.parametrize(
    ("flags", "differs"),
    [
        (["--temperature", "0.9"], "rollout"),
        (["--seed", "1"], "questions"),  # another seed draws other questions
        (["--model", "another-model"], "model"),
    ],
)
def test_a_start_evaluation_of_other_settings_is_refused(script, tmp_path, flags, differs):
    a_run(script, tmp_path / "first")
    config = a_run(script, tmp_path / "second", *flags)
    with pytest.raises(ValueError, match=differs):
        script.reused_start_evaluation(tmp_path / "first", config)
