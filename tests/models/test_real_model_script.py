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


@pytest.mark.parametrize("k", [1, 4])
def test_the_report_has_one_row_per_measure(script, tmp_path, k):
    """With one sample per question, pass@1 is the sampled accuracy: no second row."""
    args = script.parse_args(["--output", str(tmp_path), "--eval-samples", str(k)])
    before = {
        "eval/test/accuracy": 0.35,
        "eval/test_sampled/accuracy": 0.25,
        f"eval/test_sampled/pass@{k}": 0.25 if k == 1 else 0.5,
        "eval/other/accuracy": 0.1,
    }
    after = {key: value + 0.1 for key, value in before.items()}
    lines = "".join(json.dumps({"step": s, **r}) + "\n" for s, r in ((0, before), (20, after)))
    (tmp_path / "metrics.jsonl").write_text(lines)
    table = script.report(script.summarise(tmp_path, args, 60.0))
    assert table.count("| held-out stories") == (2 if k == 1 else 3)
    assert ("pass@4" in table) == (k == 4) and table.count("pass@1") == 1  # the sampled row
    assert "| held-out stories, greedy | 35.0% | 45.0% | +10.0 points |" in table


def test_the_paired_band_comes_from_the_answers_of_both_evaluations(script, tmp_path):
    args = script.parse_args(["--output", str(tmp_path), "--eval-samples", "1"])
    keys = ("eval/test/accuracy", "eval/test_sampled/accuracy", "eval/other/accuracy")
    lines = [json.dumps({"step": s, **dict.fromkeys(keys, a)}) for s, a in ((0, 0.25), (20, 0.5))]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    unpaired = script.report(script.summarise(tmp_path, args, 60.0))
    # no evals.jsonl (a run of an earlier apo): the unpaired band alone,
    # 2 * sqrt((0.25 * 0.75 + 0.5 * 0.5) / 300) = 7.6 points
    greedy = next(line for line in unpaired.splitlines() if "greedy" in line)
    assert greedy.endswith("| +25.0 points | ± 7.6 (beyond) |  |")
    # greedy on the test set: q0 right both times, q1 newly right, q2 and q3 wrong both
    # times: d = (0, 1, 0, 0), mean 0.25, sd^2 = 0.25, band = 2 * sqrt(0.25 / 4) = 0.5
    right = {0: {"q0"}, 20: {"q0", "q1"}}
    rows = [
        {"step": step, "set": "test", "id": q, "sample": 0, "correct": q in right[step]}
        for step in (0, 20)
        for q in ("q0", "q1", "q2", "q3")
    ]
    (tmp_path / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = script.summarise(tmp_path, args, 60.0)
    assert result["greedy_paired_noise"] == pytest.approx(0.5)
    assert result["sampled_paired_noise"] is None  # no answers of that set
    greedy = next(line for line in script.report(result).splitlines() if "greedy" in line)
    assert greedy.endswith("| ± 50.0 (within) |")


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        (["--algorithm", "grpo"], "GRPO"),
        (["--algorithm", "grpo", "--dads"], "GRPO+DADS"),
        (["--algorithm", "grpo", "--stcr", "--no-dads"], "GRPO+STCR"),
        (["--algorithm", "apo", "--dads"], "APO"),
        (["--algorithm", "apo", "--no-stcr"], "APO-STCR"),
    ],
)
def test_the_report_names_the_variant(script, tmp_path, flags, name):
    assert script.variant_name(script.parse_args(["--output", str(tmp_path), *flags])) == name


def test_the_shaping_strength_reaches_the_config(script, tmp_path):
    args = script.parse_args(["--output", str(tmp_path), "--beta", "0.04", "--stcr-base", "1.2"])
    config = script.train_config(args, script.write_data(tmp_path / "data", args))
    assert (config.algorithm.beta, config.algorithm.stcr_base) == (0.04, 1.2)
    official = script.parse_args(["--output", str(tmp_path)])
    assert (official.beta, official.stcr_base) == (1e-3, 1.00001)
