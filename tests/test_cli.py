import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import apo
from apo.cli import main
from apo.tracking import read_metrics


def run_apo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apo", *args], capture_output=True, text=True, timeout=120
    )


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "apo"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"apo {apo.__version__}"


def test_advantages_shows_the_built_in_example():
    result = run_apo("advantages")
    assert result.returncode == 0, result.stderr
    assert "GRPO vs APO: 1 group(s) of 8" in result.stdout
    # The 1,900-token wrong answer: GRPO -0.4677, STCR w = 1 - 1.00001^-(1900 - 333.33)
    assert "-0.4677" in result.stdout
    assert f"{1 - 1.00001 ** -(1900 - 1000 / 3):.5f}" in result.stdout


def test_advantages_of_a_given_group_by_hand():
    # rewards [1, 0]: A = +-0.5 / sqrt(0.5) = +-0.7071; wrong answer 10 tokens longer,
    # base 2: w = 1 - 2^-10 = 0.99902, APO A = -0.7071 * 1.99902 = -1.4135;
    # d = 0.5: DADS weight of the positive 1 - exp(-e/2) = 0.7431.
    result = run_apo(
        "advantages",
        "--rewards",
        "1,0",
        "--correct",
        "1,0",
        "--lengths",
        "10,20",
        "--stcr-base",
        "2",
    )
    assert result.returncode == 0, result.stderr
    for expected in ("+0.7071", "-0.7071", "0.99902", "-1.4135", "0.7431"):
        assert expected in result.stdout


def test_advantages_offers_every_shaping_setting_as_a_flag():
    from apo.algorithms.config import SHAPING_FIELDS, AlgorithmConfig
    from apo.cli import build_parser

    advantages = build_parser()._subparsers._group_actions[0].choices["advantages"]
    flags = {action.dest: action for action in advantages._actions}
    for name in SHAPING_FIELDS:
        field = AlgorithmConfig.model_fields[name]
        assert flags[name].option_strings[0] == "--" + name.replace("_", "-")
        assert flags[name].default == field.default
        assert field.description in flags[name].help


def test_advantages_flags_reach_the_shaping(capsys):
    # rloo of rewards [1, 0]: each response minus the mean of the others, +-1
    assert main(["advantages", "--rewards", "1", "0", "--advantage", "rloo"]) == 0
    out = capsys.readouterr().out
    assert out.count("+1.0000") == 2 and out.count("-1.0000") == 2  # GRPO and APO alike
    assert main(["advantages", "--stcr-base", "1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "apo advantages: error: stcr_base: Input should be greater than 1 (got 1.0)"
    )


def test_eval_help_lists_every_benchmarks_splits():
    result = run_apo("eval", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Splits (first: default): mathvista: testmini;" in text
    assert "mmmu: validation, dev; custom: train, test, validation." in text


def test_bad_input_is_a_clear_error():
    result = run_apo("advantages", "--rewards", "1,0", "--correct", "1,0", "--lengths", "1,2,3")
    assert result.returncode == 2
    assert "lengths has shape (3,) but rewards has shape (2,)" in result.stderr
    assert "Traceback" not in result.stderr


def test_non_numeric_input_names_the_option():
    result = run_apo("advantages", "--rewards", "1,abc")
    assert result.returncode == 2
    assert "--rewards" in result.stderr and "comma-separated numbers" in result.stderr


@pytest.mark.parametrize("rewards", [["1,0,1,0"], ["1", "0", "1", "0"], ["1,0", "1", "0"]])
def test_advantages_of_rewards_alone_comma_or_space_separated(rewards, capsys):
    assert main(["advantages", "--rewards", *rewards]) == 0
    out = capsys.readouterr().out
    assert "GRPO vs APO: 1 group(s) of 4" in out
    assert out.count("+0.8660") == 4 and out.count("-0.8660") == 4  # GRPO and APO alike
    assert "--correct not given: a response is correct where its reward is >= 1." in out
    assert "--lengths not given: all responses are 100 tokens, so STCR changes nothing" in out


def test_advantages_without_rewards_says_which_flags_to_pass(capsys):
    assert main(["advantages", "--lengths", "10", "20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("apo advantages: error: --correct and --lengths describe")
    assert "apo advantages --rewards 1 0 1 0 --correct 1 0 1 0 --lengths" in err


def test_no_command_prints_help():
    result = run_apo()
    assert result.returncode == 2
    assert "advantages" in result.stdout


@pytest.mark.slow
def test_a_bad_command_line_value_is_one_line_naming_the_setting(tmp_path):
    result = run_apo(
        "eval", "--model", "tiny", "--benchmark", "custom=examples/data/plain.jsonl",
        "--samples-per-question", "0", "--output", str(tmp_path / "eval"),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "apo eval: error: samples_per_question: Input should be greater than or equal to 1 (got 0)"
    )


@pytest.mark.slow
def test_an_unwritable_output_is_one_line_for_every_command(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "reward/total": 0.5}\n')
    commands = {
        "demo": ["demo", "--quick", "--output", str(blocker / "demo")],
        "compare": ["compare", "--quick", "--output", str(blocker / "compare")],
        "plot": ["plot", str(run), "--output", str(blocker / "plots")],
        "eval": [
            "eval", "--model", "tiny", "--benchmark", "custom=examples/data/plain.jsonl",
            "--output", str(blocker / "eval"),
        ],
    }  # fmt: skip
    for command, args in commands.items():
        result = run_apo(*args)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, command
        assert f"apo {command}: error: {blocker}/" in result.stderr, (command, result.stderr)
        assert "(--output) is not writable" in result.stderr, (command, result.stderr)


def test_train_reads_a_config_from_any_folder(tmp_path):
    """configs/tiny.yaml names its data relative to itself; the run folder stays relative
    to where apo runs."""
    root = Path(__file__).resolve().parents[1]
    config = root / "configs" / "tiny.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "apo", "train", str(config), "--print-config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["data"]["path"] == str(root / "examples" / "data" / "plain.jsonl")
    assert printed["logging"]["output_dir"] == "runs/tiny"


@pytest.mark.slow
def test_estimate_memory_of_a_config_without_its_data_path(tmp_path):
    """configs/view-r1-3b.yaml leaves data.path to the command line: the estimate reads
    no data, so it does not need one; --gpu-memory warns when the peak exceeds it."""
    root = Path(__file__).resolve().parents[1]
    config = tmp_path / "no-data.yaml"
    config.write_text("model: {name_or_path: tiny}\ndata: {path: null}\n")
    result = run_apo("estimate-memory", str(config), "--json", "--gpu-memory", "0.001")
    assert result.returncode == 0, result.stderr
    estimate = json.loads(result.stdout)
    assert set(estimate["phases_gib"]) == {"generation", "log-prob passes", "update"}
    assert estimate["peak_gib"] == max(estimate["phases_gib"].values())
    assert "warning: the peak" in result.stderr

    table = run_apo("estimate-memory", str(root / "configs" / "tiny.yaml"), "lora.enabled=true")
    assert table.returncode == 0, table.stderr
    assert "KV cache (rollout)" in table.stdout and "peak:" in table.stdout
    assert "warning: the peak" not in table.stderr


@pytest.mark.slow
def test_convert_gguf_refuses_what_it_cannot_convert_before_loading_anything(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"")
    result = run_apo("convert-gguf", str(tmp_path / "model.bin"), str(tmp_path / "out"))
    assert result.returncode == 2
    assert "model.bin is not a .gguf file" in result.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep")
    (tmp_path / "m.gguf").write_bytes(b"")
    result = run_apo("convert-gguf", str(tmp_path / "m.gguf"), str(tmp_path / "taken"))
    assert result.returncode == 2 and "already exists and is not empty" in result.stderr
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    result = run_apo("convert-gguf", str(tmp_path / "missing.gguf"), str(tmp_path / "out"))
    assert result.returncode == 2 and "no such GGUF file" in result.stderr
    assert not (tmp_path / "out").exists()


def write_metrics(run):
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1, "reward/total": 0.5}\n')
    return str(run)


def test_plot_of_several_runs_writes_outside_them_and_says_where(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a, b = write_metrics(tmp_path / "runs" / "a"), write_metrics(tmp_path / "runs" / "b")
    assert main(["plot", a, b]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "figures of 2 runs in plots/a_vs_b (choose with --output)"
    assert (tmp_path / "plots" / "a_vs_b" / "reward_accuracy.png").is_file()
    assert not (tmp_path / "runs" / "a" / "plots").exists()


def test_plot_of_one_run_writes_into_it(tmp_path, capsys):
    run = write_metrics(tmp_path / "a")
    assert main(["plot", run]) == 0
    assert f"{run}/plots/reward_accuracy.png" in capsys.readouterr().out.splitlines()


@pytest.mark.slow
def test_a_moved_run_resumes_from_another_folder_with_its_own_config(tmp_path):
    """Train one step with its data inside the run folder, move the folder, and resume
    it from another working directory with the moved config.yaml: it continues from its
    checkpoint in the moved folder."""
    root = Path(__file__).resolve().parents[1]
    project = tmp_path / "project"
    shutil.copytree(root / "examples" / "data", project / "runs" / "a" / "data")
    (project / "train.yaml").write_text(
        "model: {name_or_path: tiny}\n"
        "data: {path: runs/a/data/plain.jsonl, max_prompt_length: 1024}\n"
        "rollout: {group_size: 2, max_new_tokens: 8}\n"
        "rewards: {num_workers: 1}\n"
        "batch: {prompts_per_step: 2, prompts_per_update: 2, micro_batch_size: 4}\n"
        "training: {max_steps: 1, seed: 0}\n"
        "logging: {output_dir: runs/a}\n"
        "checkpoint: {every: 1, export_final_model: false}\n"
    )

    def train(*args, cwd):
        result = subprocess.run(
            [sys.executable, "-m", "apo", "train", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=cwd,
        )
        assert result.returncode == 0, result.stderr
        return result

    train("train.yaml", cwd=project)
    moved = tmp_path / "archive" / "b"
    moved.parent.mkdir()
    (project / "runs" / "a").rename(moved)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = train("../archive/b/config.yaml", "--resume", "training.max_steps=2", cwd=elsewhere)
    assert "resumed" in result.stderr + result.stdout
    assert [r["step"] for r in read_metrics(moved)] == [1, 2]
    assert sorted(p.name for p in (moved / "checkpoints").iterdir()) == [
        "step-00000001",
        "step-00000002",
    ]
    assert list(elsewhere.iterdir()) == [] and not (project / "runs" / "a").exists()


def test_train_overwrite_reaches_the_config(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model: {name_or_path: tiny}\ndata: {path: d.jsonl}\n")
    assert main(["train", str(config), "--overwrite", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["logging"]["overwrite"] is True
