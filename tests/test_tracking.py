"""RunTracker: what a run's log files hold, and how a resumed run cuts them."""

import json

from apo.tracking import RunTracker, read_eval_rows, read_metrics

ROWS = [
    {"id": "q1", "sample": 0, "response": "<answer>3</answer>", "correct": True, "length": 5},
    {"id": "q2", "sample": 0, "response": "…", "correct": False, "length": 1},
]


def test_eval_rows_are_written_with_their_step_and_set_and_read_back_by_step(tmp_path):
    tracker = RunTracker(tmp_path, {})
    tracker.log_eval_rows(0, "test", ROWS)
    tracker.log_eval_rows(5, "test", ROWS[:1])
    tracker.log_eval_rows(5, "other", [])  # nothing to write: no line
    lines = (tmp_path / "evals.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 0, "set": "test", **ROWS[0]},
        {"step": 0, "set": "test", **ROWS[1]},
        {"step": 5, "set": "test", **ROWS[0]},
    ]
    assert "…" in lines[1]  # unescaped, as samples.jsonl
    assert [r["id"] for r in read_eval_rows(tmp_path, 5)] == ["q1"]
    assert len(read_eval_rows(tmp_path)) == 3
    assert read_eval_rows(tmp_path / "never-evaluated") == []


def test_a_resumed_run_cuts_every_log_after_its_checkpoint(tmp_path):
    tracker = RunTracker(tmp_path, {})
    for step in (0, 1, 2):
        tracker.log(step, {"reward/total": 0.5})
        tracker.log_samples(step, [{"id": "q1"}])
        tracker.log_eval_rows(step, "test", ROWS)
    with (tmp_path / "evals.jsonl").open("a") as handle:
        handle.write('{"step": 3, "set": "te')  # killed mid-line
    tracker.truncate_after(1)
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1]
    assert {r["step"] for r in read_eval_rows(tmp_path)} == {0, 1}
    samples = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in samples] == [0, 1]
    tracker.truncate_after(-1)  # a fresh start: nothing of the earlier attempt stays
    assert read_metrics(tmp_path) == [] and read_eval_rows(tmp_path) == []


def test_a_reused_evaluation_copies_that_steps_answers_only(tmp_path):
    source = RunTracker(tmp_path / "source", {})
    source.log_eval_rows(0, "test", ROWS)
    source.log_eval_rows(3, "test", ROWS[:1])
    copy = RunTracker(tmp_path / "copy", {})
    copy.copy_eval_rows(tmp_path / "source", 0)
    assert read_eval_rows(tmp_path / "copy") == read_eval_rows(tmp_path / "source", 0)
    copy.copy_eval_rows(tmp_path / "older-run-without-evals", 0)  # nothing to copy
    assert len(read_eval_rows(tmp_path / "copy")) == 2


def test_a_tracker_of_another_process_writes_nothing(tmp_path):
    tracker = RunTracker(tmp_path / "run", {}, enabled=False)
    tracker.log(1, {"reward/total": 0.5})
    tracker.log_eval_rows(1, "test", ROWS)
    tracker.truncate_after(0)
    assert not (tmp_path / "run").exists()
