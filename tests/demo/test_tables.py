"""The demo's before/after table and apo compare's effects table."""

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from apo.demo.compare import effects_markdown
from apo.demo.report import (
    DemoResult,
    changes_summary,
    noise_band,
    noise_bands,
    paired_noise_band,
    question_scores,
    table_rows,
    write_report,
)
from apo.demo.settings import DemoSettings


def test_noise_band_is_two_standard_errors_of_the_difference():
    # 2 * sqrt((0.5 * 0.5 + 0.8 * 0.2) / 100) = 2 * sqrt(0.0041)
    assert noise_band(0.5, 0.8, 100) == pytest.approx(2 * math.sqrt(0.0041))
    assert noise_band(0.0, 1.0, 50) == 0.0  # certain outcomes carry no sampling noise
    assert noise_band(0.5, 0.5, 400) < noise_band(0.5, 0.5, 100)


def test_question_scores_are_each_questions_share_of_right_answers():
    rows = [
        {"id": "a", "sample": 0, "correct": True},
        {"id": "a", "sample": 1, "correct": False},
        {"id": "b", "sample": 0, "correct": False},
        {"id": "b", "sample": 1, "correct": False},
    ]
    assert question_scores(rows) == {"a": 0.5, "b": 0.0}


def test_paired_noise_band_is_two_standard_errors_of_the_mean_change_per_question():
    before = {"q1": 0.0, "q2": 1.0, "q3": 0.0, "q4": 1.0}
    after = {"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 0.0, "only-after": 1.0}
    # d = (1, 0, 0, -1): mean 0, sd^2 = 2 / 3, band = 2 * sqrt(2 / 3 / 4)
    assert paired_noise_band(before, after) == pytest.approx(2 * math.sqrt(2 / 3 / 4))
    assert paired_noise_band(before, before) == 0.0  # every question as before: no noise
    assert paired_noise_band({"q1": 0.0}, {"q1": 1.0}) is None  # one question: no spread
    # the same rates, 30 % -> 50 % on 100 questions: where answers agree with themselves
    # (20 questions newly right, none newly wrong) the paired band is the tighter one
    before = {f"q{i}": float(i < 30) for i in range(100)}
    after = {f"q{i}": float(i < 50) for i in range(100)}
    assert paired_noise_band(before, after) < noise_band(0.3, 0.5, 100)


def test_table_marks_changes_beyond_and_within_the_noise():
    result = DemoResult(
        samples=8,
        before_after={
            "reasoning accuracy, greedy": (0.40, 0.80),
            "general accuracy, greedy": (0.95, 0.93),
            "length, incorrect (sampled)": (34.6, 26.1),
        },
        noise={"reasoning accuracy, greedy": 0.09, "general accuracy, greedy": 0.07},
        seconds=60.0,
        run_dir=Path("runs/demo"),
    )
    rows = {row[0]: row for row in table_rows(result)}
    assert rows["reasoning accuracy, greedy"][1:] == (
        "40.0%", "80.0%", "+40.0 points", "± 9.0 (beyond)"
    )  # fmt: skip
    assert rows["general accuracy, greedy"][3:] == ("-2.0 points", "± 7.0 (within)")
    assert rows["length, incorrect (sampled)"][1:] == ("34.6", "26.1", "-8.5", "")


def test_effects_are_paired_differences_with_grpo_over_seeds():
    def run(length, kl):
        return {"length incorrect": length, "KL": kl, "entropy": None}

    summaries = {
        "GRPO": [run(30.0, 0.10), run(32.0, 0.20)],
        "GRPO+STCR": [run(26.0, 0.10), run(30.0, 0.20)],
        "GRPO+DADS": [run(30.0, 0.05), run(32.0, 0.10)],
    }
    table = effects_markdown(summaries)
    assert "| STCR | length incorrect | -3 ± 1.4 | -4, -2 |" in table
    assert "| DADS | KL | -0.075 ± 0.035 | -0.05, -0.1 |" in table
    assert "entropy" not in table  # no values: no row


def test_options_beyond_grpo_are_paired_with_apo():
    def run(accuracy, minutes, truncated):
        return {"reasoning acc (greedy)": accuracy, "train time": minutes, "truncated": truncated}

    summaries = {
        "APO": [run(0.50, 2.0, 0.10), run(0.60, 2.5, 0.20)],
        "APO+DS": [run(0.55, 3.0, 0.10), run(0.70, 3.5, 0.20)],
        "APO+overlong": [run(0.50, 2.0, 0.05), run(0.60, 2.5, 0.10)],
        "GRPO+STCR": [run(0.40, 2.0, 0.3), run(0.40, 2.0, 0.3)],  # no GRPO: not paired
    }
    table = effects_markdown(summaries)
    assert "| dynamic sampling | reasoning acc (greedy) | +7.5 ± 3.5 points | +5, +10 |" in table
    assert "| dynamic sampling | train time | +1 ± 0 min | +1, +1 |" in table
    assert "| overlong | truncated | -7.5 ± 3.5 points | -5, -10 |" in table
    assert "STCR" not in table


def test_the_command_offers_every_variant():
    from apo.cli import build_parser
    from apo.demo.compare import VARIANTS

    parser = build_parser()
    compare = parser._subparsers._group_actions[0].choices["compare"]
    [variants] = [a for a in compare._actions if a.dest == "variants"]
    assert list(variants.choices) == list(VARIANTS)


RESULT = DemoResult(
    samples=4,
    before_after={
        "reasoning accuracy, greedy": (0.40, 0.80),
        "general accuracy, greedy": (0.95, 0.93),
        "enumeration exact (greedy)": (0.90, 0.70),
        "answer agrees with own enumeration (greedy)": (0.35, 0.36),
        "length, incorrect (sampled)": (34.6, 26.1),
    },
    noise={
        "reasoning accuracy, greedy": 0.09,
        "general accuracy, greedy": 0.07,
        "enumeration exact (greedy)": 0.08,
        "answer agrees with own enumeration (greedy)": 0.095,
    },
    seconds=150.0,
    run_dir=Path("runs/demo"),
    report=Path("runs/demo/report.md"),
)


def test_the_report_names_every_change_beyond_its_noise_good_or_bad():
    summary = changes_summary(RESULT)
    assert "better: reasoning accuracy, greedy +40.0 points (± 9.0)" in summary
    assert "worse: enumeration exact (greedy) -20.0 points (± 8.0)" in summary
    assert "general accuracy" not in summary  # within its band
    quiet = replace(RESULT, noise={name: 0.5 for name in RESULT.noise})
    assert changes_summary(quiet) == "No change is beyond its noise band."


def test_the_demo_report_holds_the_summary(tmp_path):
    text = write_report(tmp_path, DemoSettings(), RESULT, []).read_text()
    assert changes_summary(RESULT) in text


def test_the_saved_result_keeps_its_json_layout():
    """demo_result.json: what apo compare and a later --start-eval-from read."""
    saved = json.loads(json.dumps(RESULT.to_json()))
    assert list(saved) == ["before_after", "noise", "samples", "seconds", "run_dir", "report"]
    assert saved["before_after"]["reasoning accuracy, greedy"] == [0.40, 0.80]
    assert saved["run_dir"] == "runs/demo" and saved["report"] == "runs/demo/report.md"
    assert "report" not in replace(RESULT, report=None).to_json()  # run without a report


def test_noise_bands_cover_the_rates_measured_twice():
    rows = dict(RESULT.before_after) | {"general accuracy, sampled": (None, 0.5)}
    bands = noise_bands(rows, samples=4, questions={"reasoning": 200, "general": 100})
    assert bands["general accuracy, greedy"] == noise_band(0.95, 0.93, 100)
    # the checks of the greedy reasoning count the reasoning questions
    assert bands["enumeration exact (greedy)"] == noise_band(0.90, 0.70, 200)
    assert "length, incorrect (sampled)" not in bands  # not a rate
    assert "general accuracy, sampled" not in bands  # measured once


def test_the_console_table_is_whole_in_a_pipe():
    """Piped to a file, rich would cut cells to 80 columns ("befo...")."""
    code = (
        "from apo.cli import print_demo_result; from apo.demo.report import DemoResult; "
        "import json, sys; print_demo_result(DemoResult(**json.loads(sys.argv[1])), "
        "'APO on the synthetic task (seed 0)')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(RESULT.to_json())],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "…" not in out and "..." not in out
    cells = ("before", "after", "change", "noise (2 SE)", "answer agrees with own enumeration")
    for cell in cells:
        assert cell in out
    assert "± 8.0 (beyond)" in out and "-20.0 points" in out
    assert "worse: enumeration exact (greedy) -20.0 points" in " ".join(out.split())
