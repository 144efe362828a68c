"""pass@k, summaries and the comparison table, by hand."""

import math

import pytest

from apo.evaluation.report import compare_table, markdown_summary, pass_at_k, summarize


def test_pass_at_k_by_hand():
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(4, 1, 4) == 1.0
    assert math.isclose(pass_at_k(5, 2, 2), 1 - math.comb(3, 2) / math.comb(5, 2))  # 0.7
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def row(qid, sample, correct, length, categories=None, **more):
    return {
        "id": qid,
        "sample": sample,
        "correct": correct,
        "length": length,
        "truncated": length >= 100,
        "formatted": correct,
        "categories": categories or {},
        **more,
    }


def test_summary_by_hand():
    rows = [
        row("a", 0, True, 10, {"task": ["x"]}),
        row("a", 1, False, 30, {"task": ["x"]}),
        row("b", 0, False, 100, {"task": ["x", "y"]}),
        row("b", 1, False, 50, {"task": ["x", "y"]}, ground_truth_error=True),
    ]
    summary = summarize(rows)
    assert summary["questions"] == 2 and summary["samples_per_question"] == 2
    assert summary["accuracy"] == 0.25  # (1/2 + 0/2) / 2
    assert summary["pass@2"] == 0.5
    assert summary["format_rate"] == 0.25 and summary["truncated_rate"] == 0.25
    assert summary["length_correct_mean"] == 10 and summary["length_incorrect_mean"] == 60
    assert summary["unreadable_ground_truth"] == 1
    assert summary["categories"]["task"] == {
        "x": {"accuracy": 0.25, "questions": 2},
        "y": {"accuracy": 0.0, "questions": 1},
    }


def benchmarks(**accuracies):
    return {
        "model": "m",
        "benchmarks": {
            name: summarize([row("q", 0, True, 5)]) | {"accuracy": value}
            for name, value in accuracies.items()
        },
    }


def test_compare_table_differences_and_average():
    base = benchmarks(mathvista=0.50, mmstar=0.40)
    trained = benchmarks(mathvista=0.55, mmstar=0.38, mmmu=0.3)
    table = compare_table([base, trained], ["base", "trained"])
    lines = table.splitlines()
    assert lines[0] == "| benchmark | base | trained | Δ trained |"
    assert "| mathvista | 50.0 | 55.0 | +5.0 |" in lines
    assert "| mmstar | 40.0 | 38.0 | -2.0 |" in lines
    assert "| mmmu | - | 30.0 | - |" in lines
    assert "| average | 45.0 | 46.5 | +1.5 |" in lines  # over the shared benchmarks


def test_markdown_summary_lists_benchmarks_and_categories():
    summary = {
        "model": "m",
        "benchmarks": {"mmk12": summarize([row("q", 0, True, 5, {"subject": ["math"]})])},
    }
    text = markdown_summary(summary)
    assert "| mmk12 | 1 | 100.0 (k=1) | 100.0 |" in text
    assert "## mmk12: accuracy by subject" in text and "| math | 1 | 100.0 |" in text
