"""``apo eval`` as a user runs it: the tiny model on every fixture benchmark,
results and summary files, resuming, comparing, and bad input."""

import json

import pytest

from apo.evaluation.runner import BenchmarkRequest, read_results
from tests.evaluation import fixtures
from tests.trainer.test_distributed_and_cli import apo


@pytest.fixture(scope="module")
def benchmark_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    return {name: writer(root) for name, writer in fixtures.WRITERS.items()}


@pytest.fixture(scope="module")
def evaluated(benchmark_files, tmp_path_factory):
    """One evaluation of the tiny model on all seven benchmarks, 2 samples each."""
    output = tmp_path_factory.mktemp("eval") / "tiny"
    specs = [f"--benchmark={name}={path}" for name, path in benchmark_files.items()]
    result = apo(
        "eval", "--model", "tiny", *specs, "--samples-per-question", "2",
        "--max-new-tokens", "8", "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


@pytest.mark.slow
def test_results_and_summary(evaluated, benchmark_files):
    output, result = evaluated
    summary = json.loads((output / "summary.json").read_text())
    assert list(summary["benchmarks"]) == list(benchmark_files)
    assert summary["settings"]["samples_per_question"] == 2
    for name, figures in summary["benchmarks"].items():
        rows = [json.loads(line) for line in (output / f"{name}.jsonl").read_text().splitlines()]
        assert len(rows) == 2 * figures["questions"]
        assert {"id", "prompt", "response", "extracted", "answer", "correct"} <= set(rows[0])
        assert sorted({r["sample"] for r in rows}) == [0, 1]
        assert 0 <= figures["accuracy"] <= figures["pass@2"] <= 1
        assert all(r["length"] <= 8 for r in rows)
        assert set(figures["categories"]) == set(fixtures_fields(name))
    assert "| mathvista | 4 |" in result.stdout  # the markdown summary is printed
    assert (output / "summary.md").read_text().startswith("# Evaluation of `tiny`")


def fixtures_fields(name):
    from apo.evaluation.benchmarks import get_benchmark

    return get_benchmark(name).category_fields


@pytest.mark.slow
def test_a_rerun_answers_only_what_is_missing(evaluated, benchmark_files):
    output, _ = evaluated
    path = output / "mmk12.jsonl"
    lines = path.read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["id"] != "physics_2"]
    path.write_text("\n".join(kept) + "\n" + kept[0][:20])  # and a line cut by a kill
    result = apo(
        "eval", "--model", "tiny", f"--benchmark=mmk12={benchmark_files['mmk12']}",
        "--samples-per-question", "2", "--max-new-tokens", "8", "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    after = path.read_text().splitlines()
    assert after[: len(kept)] == kept  # untouched
    assert [json.loads(line)["id"] for line in after[len(kept) :]] == ["physics_2"] * 2
    summary = json.loads((output / "summary.json").read_text())
    assert list(summary["benchmarks"]) == list(benchmark_files)  # the others are kept


def test_other_settings_are_not_mixed_into_old_results(evaluated, benchmark_files):
    output, _ = evaluated
    result = apo(
        "eval", "--model", "tiny", f"--benchmark=mmk12={benchmark_files['mmk12']}",
        "--samples-per-question", "4", "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 2
    assert "holds results made with other settings (max_new_tokens, samples_per_question)" in (
        result.stderr
    )


def test_compare_prints_the_side_by_side_table(evaluated, tmp_path):
    output, _ = evaluated
    other = tmp_path / "trained"
    other.mkdir()
    summary = json.loads((output / "summary.json").read_text())
    summary["benchmarks"]["mmk12"]["accuracy"] += 0.25
    (other / "summary.json").write_text(json.dumps(summary))
    result = apo("eval", "--compare", str(output), str(other))
    assert result.returncode == 0, result.stderr
    assert "| benchmark | tiny | trained | Δ trained |" in result.stdout
    assert "+25.0 |" in result.stdout and "| average |" in result.stdout


@pytest.mark.slow
def test_bad_benchmark_arguments_fail_before_loading(benchmark_files, tmp_path):
    result = apo("eval", "--model", "tiny", "--benchmark", "mmk12")
    assert result.returncode == 2 and "expected NAME=PATH or NAME:SPLIT=PATH" in result.stderr
    result = apo("eval", "--model", "tiny", "--benchmark", f"mmk12:val={tmp_path}")
    assert "mmk12 has no split 'val'; choose from test" in result.stderr
    result = apo("eval", "--model", "/no/such/model", "--benchmark", f"mmk12={tmp_path}")
    assert result.returncode == 2 and "no MMK12 test files here" in result.stderr
    result = apo("eval", "--compare", str(tmp_path))
    assert result.returncode == 2 and "no summary.json" in result.stderr


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"question": "q", "answer": "1", "image": {"bytes": "iVBORw0KGgo="}},
            ":2, field 'image': image 'bytes' must be raw bytes, got str",
        ),
        ("[" * 100_000 + "]" * 100_000, ":2: malformed JSON: nested too deeply"),
    ],
    ids=["wrong-type", "deep-json"],
)
@pytest.mark.slow
def test_a_bad_custom_row_is_one_error_line_without_traceback(tmp_path, row, message):
    path = tmp_path / "questions.jsonl"
    line = row if isinstance(row, str) else json.dumps(row)
    path.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n" + line + "\n")
    result = apo("eval", "--model", "tiny", f"--benchmark=custom={path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"apo eval: error: {path}{message}" in result.stderr


def test_read_results_keeps_only_complete_questions(tmp_path):
    path = tmp_path / "r.jsonl"
    rows = [{"id": "a", "sample": 0}, {"id": "a", "sample": 1}, {"id": "b", "sample": 0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"id": "b", "sa')
    assert list(read_results(path, samples=2)) == ["a"]
    assert len(path.read_text().splitlines()) == 2


def test_benchmark_request_parsing():
    request = BenchmarkRequest.parse("MathVision:testmini=/data/mv")
    assert (request.benchmark.name, request.split, request.path) == (
        "mathvision",
        "testmini",
        "/data/mv",
    )
    assert request.key == "mathvision-testmini"
    assert BenchmarkRequest.parse("mmmu=/d").key == "mmmu"


def hanging_judge(question, prediction):
    import time

    time.sleep(30)
    return True


@pytest.mark.slow
def test_a_hanging_judge_is_stopped_and_counted_wrong():
    """A judge stuck on adversarial text (math_verify can be) is killed after the
    timeout; its answer counts as wrong and the verdict says why."""
    import dataclasses
    import time

    from apo.evaluation.benchmarks import Question, get_benchmark
    from apo.evaluation.runner import Judge

    hanging = dataclasses.replace(get_benchmark("custom"), judge=hanging_judge)
    judge = Judge(timeout=1.0)
    try:
        start = time.monotonic()
        [verdict] = judge(hanging, [(Question(id="q", question="?", answer="1"), "1")])
        assert verdict == {"correct": False, "judge_timeout": True}
        assert time.monotonic() - start < 20
        [fine] = judge(get_benchmark("custom"), [(Question(id="q", question="?", answer="1"), "1")])
        assert fine == {"correct": True, "ground_truth_error": False}  # the pool recovered
    finally:
        judge.close()
