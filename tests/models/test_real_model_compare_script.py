"""scripts/real_model_compare.py: finished runs are kept and summarised, paired by seed
(no model needed: the runs here are their files)."""

import importlib.util
import json

import pytest

from tests.trainer.conftest import ROOT


@pytest.fixture(scope="module")
def script():
    path = ROOT / "scripts" / "real_model_compare.py"
    spec = importlib.util.spec_from_file_location("real_model_compare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def finished_run(folder, greedy, kl_last, answers=None, **settings):
    """A run folder as scripts/real_model.py leaves it, with the figures given (and
    those of its settings given; the others read as this command's). ``answers``:
    {step: {evaluation set: each question's correct flags}} for evals.jsonl."""
    folder.mkdir(parents=True)
    if answers is not None:
        rows = [
            {"step": step, "set": eval_set, "id": f"q{i}", "sample": 0, "correct": right}
            for step, sets in answers.items()
            for eval_set, flags in sets.items()
            for i, right in enumerate(flags)
        ]
        (folder / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    figures = {
        "settings": settings,
        "greedy_before": 0.35,
        "greedy_after": greedy,
        "sampled_after": greedy - 0.1,
        "other_greedy_after": 0.4,
        "length_correct_mean_after": 19.0,
        "length_incorrect_mean_after": 20.0,
    }
    (folder / "real_model.json").write_text(json.dumps(figures))
    steps = [{"step": s, "kl/mean": 1.0, "entropy/mean": 0.1} for s in range(1, 16)]
    steps += [{"step": s, "kl/mean": kl_last, "entropy/mean": 0.1} for s in range(16, 21)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))


def test_finished_runs_are_summarised_and_paired_by_seed(script, tmp_path):
    output = tmp_path / "compare"
    runs = {("GRPO", 0): (0.40, 0.02), ("GRPO", 1): (0.44, 0.04),
            ("APO", 0): (0.50, 0.03), ("APO", 1): (0.48, 0.05)}  # fmt: skip
    for (variant, seed), (greedy, kl) in runs.items():
        finished_run(script.variant_run_dir(output, variant, seed), greedy, kl)
    results = tmp_path / "results.json"
    code = script.main(
        ["--output", str(output), "--variants", "APO", "GRPO", "--results", str(results)]
    )
    assert code == 0  # every run had finished: nothing was started
    text = (output / "compare.md").read_text()
    # greedy: GRPO 40 and 44 (mean 42.0, sd 2.8); APO 50 and 48; APO - GRPO: +10, +4
    assert "| GRPO | 42.0 ± 2.8 |" in text and "| APO | 49.0 ± 1.4 |" in text
    assert "| APO | +7.0 ± 4.2 |" in text
    # KL is the mean of the last five steps only: 0.02 and 0.04 for GRPO
    [grpo] = [line for line in text.splitlines() if line.startswith("| GRPO |")]
    assert "| 0.03 ± 0.014 |" in grpo
    assert "DADS" not in text  # its variant did not run
    assert "question by question" not in text  # runs before evals.jsonl: no paired effect
    figures = json.loads(results.read_text())
    assert [r["greedy"] for r in figures["runs"]["GRPO"]] == [0.40, 0.44]


def test_an_unfinished_run_is_started_again(script, tmp_path, monkeypatch):
    output = tmp_path / "compare"
    finished_run(script.variant_run_dir(output, "GRPO", 0), 0.4, 0.02)
    partial = script.variant_run_dir(output, "APO", 0)
    partial.mkdir(parents=True)
    (partial / "metrics.jsonl").write_text("")
    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        finished_run(partial, 0.5, 0.03)  # what the real script would leave
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(script.subprocess, "run", fake_run)
    script.main(["--output", str(output), "--seeds", "0", "--variants", "GRPO", "APO"])
    [command] = commands  # GRPO had finished; APO ran, reusing GRPO's start evaluation
    assert command[command.index("--algorithm") + 1] == "apo"
    assert command[command.index("--start-eval-from") + 1] == str(
        script.variant_run_dir(output, "GRPO", 0)
    )


def test_a_finished_run_of_other_settings_is_not_taken_for_this_one(script, tmp_path):
    output = tmp_path / "compare"
    finished_run(script.variant_run_dir(output, "GRPO", 0), 0.4, 0.02, beta=0.001, steps=20)
    with pytest.raises(ValueError, match=r"ran with beta=0\.001, not 0\.04: give another --output"):
        script.main(
            ["--output", str(output), "--seeds", "0", "--variants", "GRPO",
             "--run-flags", "--beta", "0.04"]
        )  # fmt: skip


def test_a_components_effect_on_a_seed_comes_with_its_paired_band(script, tmp_path):
    output = tmp_path / "compare"
    same = {"test_sampled": [True, False], "other": [False, True]}
    grpo = {20: {"test": [True, False, False, True], **same}}
    # the step-0 evaluation must not count: only the last one is the trained model's
    apo = {0: {"test": [False] * 4}, 20: {"test": [True, True, False, True], **same}}
    finished_run(script.variant_run_dir(output, "GRPO", 0), 0.50, 0.02, answers=grpo)
    finished_run(script.variant_run_dir(output, "APO", 0), 0.75, 0.02, answers=apo)
    script.main(["--output", str(output), "--seeds", "0", "--variants", "GRPO", "APO"])
    # greedy changes per question 0, +1, 0, 0: mean +0.25, sd 0.5, 2 SE = 2 * 0.5 / 2
    assert (
        "| APO | 0 | +25.0 ± 50.0 | +0.0 ± 0.0 | +0.0 ± 0.0 |"
        in (output / "compare.md").read_text()
    )
    [effect] = json.loads((output / "compare.json").read_text())["paired_effects"]["APO"]
    assert effect["greedy"] == 0.25 and effect["greedy band"] == 0.5
