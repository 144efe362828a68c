"""pass@k, summaries and the comparison table, by hand."""

import math

import pytest

from apo.evaluation.report import (
    NOT_RECORDED,
    comparability_warning,
    compare_table,
    markdown_summary,
    pass_at_k,
    settings_differences,
    summarize,
)


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


def test_settings_differences_names_each_differing_key_with_every_value():
    runs = [
        {"max_new_tokens": 2048, "top_p": 1.0, "prompt": {"system_prompt": "S"}},
        {"max_new_tokens": 1024, "top_p": 1.0, "prompt": {"system_prompt": None}},
        {"max_new_tokens": 2048, "top_p": 1.0},
    ]
    keys = ["prompt.system_prompt", "max_new_tokens", "top_p"]
    assert settings_differences(runs, keys) == {
        "prompt.system_prompt": ["S", None, NOT_RECORDED],
        "max_new_tokens": [2048, 1024, 2048],
    }
    assert settings_differences(runs[:1] * 2, keys) == {}


def summary_with(**settings):
    base = {"samples_per_question": 1, "temperature": None, "top_p": 1.0, "max_new_tokens": 64}
    return {
        "settings": {
            **base,
            "prompt": {"system_prompt": None, "question_template": "{question}"},
            **settings,
        }
    }


def test_comparability_warning_lists_differences_and_is_empty_when_runs_agree():
    assert comparability_warning([summary_with(), summary_with(temperature=0.0)], ["a", "b"]) == ""
    warning = comparability_warning(
        [summary_with(), summary_with(samples_per_question=4, max_new_tokens=32)], ["a", "b"]
    )
    assert warning.splitlines()[1:] == [
        "- max_new_tokens: a = 64, b = 32",
        "- samples_per_question: a = 1, b = 4",
        "- temperature: a = 0.0, b = 1.0",  # as used: greedy for one sample, 1 for several
        "",
    ]
    long = summary_with(prompt={"system_prompt": "x" * 100, "question_template": "{question}"})
    warning = comparability_warning([summary_with(), long], ["a", "b"])
    assert "- prompt.system_prompt: a = none, b = 'xxxx" in warning and "...'" in warning
