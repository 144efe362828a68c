"""apo demo --quick, apo plot and apo compare as a user runs them."""

import json
import math
import subprocess
import sys

import pytest

from apo.demo.compare import run_compare
from apo.demo.run import run_demo
from apo.demo.settings import DemoSettings
from apo.tracking import read_eval_rows, read_metrics
from tests.trainer.conftest import ROOT

FIGURES = {"reward_accuracy", "eval_accuracy", "lengths", "kl", "entropy", "dads_stcr"}


@pytest.mark.slow
def test_quick_demo_writes_the_whole_run(tmp_path):
    run = tmp_path / "demo"
    # full rows in every pass (apo compare's runs cover the default, shared prompts)
    full_rows = "--no-share-prompts"
    result = subprocess.run(
        [sys.executable, "-m", "apo", "demo", "--quick", full_rows, "--output", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reasoning accuracy, greedy" in result.stdout and "report:" in result.stdout
    for name in ("train.jsonl", "reasoning.jsonl", "general.jsonl"):
        assert (run / "data" / name).is_file()
    assert "share_prompts: false" in (run / "config.yaml").read_text()
    records = read_metrics(run)
    assert [r["step"] for r in records if "loss/total" in r] == [1, 2, 3]
    evals = [r for r in records if "eval/reasoning/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 3]
    for record in records:
        for key, value in record.items():
            if (
                key.startswith(("loss/", "kl/", "entropy/", "reward/total", "eval/"))
                and "length_" not in key
            ):
                assert value is not None and math.isfinite(value), key
    assert {p.stem for p in (run / "plots").glob("*.png")} == FIGURES
    report = (run / "report.md").read_text()
    assert "| reasoning accuracy, sampled |" in report and "](plots/lengths.png)" in report
    assert (run / "final_model" / "model.safetensors").is_file()
    saved = json.loads((run / "demo_result.json").read_text())
    assert set(saved["before_after"]) >= {
        "reasoning accuracy, greedy",
        "reasoning accuracy, sampled",
        "reasoning pass@2, sampled",
        "general accuracy, greedy",
        "enumeration exact (greedy)",
        "answer agrees with own enumeration (greedy)",
    }
    for name, (before, after) in saved["before_after"].items():
        assert before is not None and after is not None, name
    assert "reasoning accuracy, greedy" in saved["noise"]
    assert "| noise (2 SE) |" in report


def test_plot_overlays_runs(tmp_path):
    runs = []
    for name, offset in (("a", 0.0), ("b", 0.5)):
        run = tmp_path / name
        run.mkdir()
        lines = [
            {
                "step": s,
                "reward/total": offset + s / 10,
                "kl/mean": 0.01 * s,
                "eval/test/accuracy": 0.5,
            }
            for s in range(1, 6)
        ]
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        runs.append(str(run))
    result = subprocess.run(
        [sys.executable, "-m", "apo", "plot", *runs, "--output", str(tmp_path / "plots")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert {p.stem for p in (tmp_path / "plots").glob("*.png")} == FIGURES
    missing = subprocess.run(
        [sys.executable, "-m", "apo", "plot", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert missing.returncode == 2 and "has no metrics.jsonl" in missing.stderr


@pytest.mark.slow
def test_compare_runs_variants_side_by_side(tmp_path):
    variants = ("GRPO", "APO", "APO+DS", "APO+overlong", "APO+IS")
    path = run_compare(tmp_path / "compare", seeds=[0], parallel=2, quick=True, variants=variants)
    text = path.read_text()
    assert text.startswith("# apo compare: GRPO, APO, APO+DS, APO+overlong, APO+IS")
    assert all(f"| {v} |" in text for v in variants) and "reasoning acc (sampled)" in text
    assert "| dynamic sampling | train time |" in text and "| overlong | truncated |" in text
    assert (tmp_path / "compare" / "grpo" / "seed0" / "metrics.jsonl").is_file()
    assert {p.stem for p in (tmp_path / "compare" / "plots").glob("*.png")} == FIGURES
    runs = {v: read_metrics(tmp_path / "compare" / v.lower().replace("+", "-") / "seed0")
            for v in variants}  # fmt: skip
    assert all(r["dads/shaped_frac"] == 0 for r in runs["GRPO"] if "dads/shaped_frac" in r)
    assert any("stcr/penalized_frac" in r for r in runs["APO"])
    assert all("dynamic_sampling/rounds" in r for r in runs["APO+DS"][1:-1])
    assert all("reward/overlong" in r for r in runs["APO+overlong"][1:-1])
    # the same fp32 model samples and trains: the mismatch is the image placeholders'
    # probability alone (docs/ALGORITHM.md section 11), far under a nat
    mismatch = [r["importance/logp_abs_diff"] for r in runs["APO+IS"][1:-1]]
    assert mismatch and all(0 <= m < 0.1 for m in mismatch)
    assert not any("importance/logp_abs_diff" in r for r in runs["APO"])
    assert "| importance sampling | KL |" in text
    # every variant reused GRPO's start evaluation: the training-only settings of the
    # last two do not change what it measures
    assert all(runs[v][0] == runs["GRPO"][0] for v in variants)


@pytest.mark.slow
def test_a_reused_start_evaluation_equals_a_measured_one(tmp_path):
    def demo(name, **settings):
        return run_demo(DemoSettings(output_dir=str(tmp_path / name), quick=True, **settings))

    demo("grpo", algorithm="grpo")
    reused = demo("reused", start_eval_from=str(tmp_path / "grpo"))
    measured = demo("measured")
    assert read_metrics(tmp_path / "reused")[0] == read_metrics(tmp_path / "measured")[0]
    # the start evaluation's answers too, copied from the run that measured them
    assert read_eval_rows(tmp_path / "reused", 0) == read_eval_rows(tmp_path / "measured", 0)
    assert read_eval_rows(tmp_path / "reused", 0)
    assert reused.before_after == measured.before_after  # same run from there on
    assert [
        r["step"] for r in read_metrics(tmp_path / "reused") if "eval/general/accuracy" in r
    ] == [
        0,
        3,
    ]
    with pytest.raises(ValueError, match=r"--start-eval-from .*: its reasoning questions differ"):
        demo("other-seed", seed=1, start_eval_from=str(tmp_path / "grpo"))
    with pytest.raises(ValueError, match="its settings differ from this run's in rollout"):
        run_demo(
            DemoSettings(
                output_dir=str(tmp_path / "longer"),
                quick=True,
                max_new_tokens=64,
                start_eval_from=str(tmp_path / "grpo"),
            )
        )


@pytest.mark.slow
def test_demo_never_replaces_a_folder_it_did_not_write(tmp_path):
    run = tmp_path / "training-run"
    (run / "checkpoints" / "step-00000002").mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    expected = {"--quick": f"--output {run} holds files", "--steps": "--steps must be at least 1"}
    for args in (["--quick"], ["--steps", "0"]):  # refused, or invalid: nothing is touched
        result = subprocess.run(
            [sys.executable, "-m", "apo", "demo", *args, "--output", str(run)],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        assert (run / "checkpoints" / "step-00000002").is_dir()
        assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'
        assert expected[args[0]] in result.stderr


@pytest.mark.slow
def test_demo_settings_are_checked_before_the_folder_is_touched(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "apo", "demo", "--steps", "0", "--output", str(tmp_path / "new")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2 and "--steps must be at least 1 (got 0)" in result.stderr
    assert not (tmp_path / "new").exists()
