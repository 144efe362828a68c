"""``apo eval``'s prompt: --system-prompt, --question-template and --prompt-from reach
the model and the recorded settings; bad values are one-line errors; --compare warns
when runs differ in prompt, token limit or sampling."""

import json

import pytest

from apo.cli import main
from apo.data.prompts import DEFAULT_SYSTEM_PROMPT, PromptConfig
from apo.evaluation.runner import eval_prompt, training_prompt
from tests.evaluation import fixtures
from tests.trainer.test_distributed_and_cli import apo


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    return fixtures.custom(tmp_path_factory.mktemp("benchmarks"))


def evaluate(questions, output, *flags):
    """The cheapest evaluation: one question, one token."""
    result = apo(
        "eval", "--model", "tiny", f"--benchmark=custom={questions}", "--limit", "1",
        "--max-new-tokens", "1", "--output", str(output), *flags,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    settings = json.loads((output / "settings.json").read_text())
    [row] = [json.loads(line) for line in (output / "custom.jsonl").read_text().splitlines()]
    return settings, row["prompt"]


def write_config(path, prompt):
    path.write_text(json.dumps({"model": {"name_or_path": "tiny"}, "data": {"prompt": prompt}}))
    return path


@pytest.fixture(scope="module")
def default_run(questions, tmp_path_factory):
    output = tmp_path_factory.mktemp("eval") / "default"
    return output, *evaluate(questions, output)


@pytest.fixture(scope="module")
def flags_run(questions, tmp_path_factory):
    output = tmp_path_factory.mktemp("eval") / "flags"
    return output, *evaluate(
        questions, output, "--system-prompt", "none", "--question-template", "Q: {question}"
    )


@pytest.mark.slow
def test_by_default_the_r1_style_prompt_is_used_and_recorded(default_run):
    _, settings, prompt = default_run
    assert settings["prompt"] == {
        "system_prompt": DEFAULT_SYSTEM_PROMPT,
        "question_template": "{question}",
        "format": "auto",  # the chat template where the model has one
    }
    assert DEFAULT_SYSTEM_PROMPT in prompt


@pytest.mark.slow
def test_the_prompt_flags_reach_the_model_and_the_settings(flags_run):
    output, settings, prompt = flags_run
    assert settings["prompt"] == {
        "system_prompt": None,
        "question_template": "Q: {question}",
        "format": "auto",
    }
    assert "Q: What color?" in prompt and DEFAULT_SYSTEM_PROMPT not in prompt
    summary = json.loads((output / "summary.json").read_text())
    assert summary["settings"]["prompt"] == settings["prompt"]


@pytest.mark.slow
def test_prompt_from_reads_a_training_config_and_flags_override_it(questions, tmp_path):
    config = write_config(
        tmp_path / "train.yaml", {"system_prompt": None, "question_template": "Answer: {question}"}
    )
    settings, prompt = evaluate(
        questions, tmp_path / "out", "--prompt-from", str(config), "--system-prompt", "Be brief."
    )
    assert settings["prompt"] == {
        "system_prompt": "Be brief.",
        "question_template": "Answer: {question}",
        "format": "auto",
    }
    assert "Be brief." in prompt and "Answer: What color?" in prompt


def test_a_folder_with_other_prompt_settings_is_refused(default_run, questions):
    output, _, _ = default_run
    result = apo(
        "eval", "--model", "tiny", f"--benchmark=custom={questions}", "--limit", "1",
        "--max-new-tokens", "1", "--output", str(output), "--system-prompt", "none",
    )  # fmt: skip
    assert result.returncode == 2
    assert "other settings (prompt.system_prompt)" in result.stderr


def test_prompt_from_takes_a_run_folder_and_a_config_without_a_prompt(tmp_path):
    write_config(tmp_path / "config.yaml", {"system_prompt": None})
    assert training_prompt(tmp_path) == PromptConfig(system_prompt=None)
    (tmp_path / "plain.yaml").write_text("data:\n  path: train.jsonl\n")
    assert training_prompt(tmp_path / "plain.yaml") == PromptConfig()  # apo train's default
    assert eval_prompt() == PromptConfig()
    assert eval_prompt(system_prompt="NONE").system_prompt is None


def eval_error(questions, *flags, capsys):
    """``apo eval``'s error output, checked to be one line (the model is not loaded)."""
    code = main(["eval", "--model", "tiny", f"--benchmark=custom={questions}", *flags])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("apo eval: error: ") and error.count("\n") == 1
    return error


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Q:", "--question-template 'Q:': no {question} placeholder"),
        ("{q} {question}", "--question-template '{q} {question}': unknown placeholder {q}"),
        ("{question", "expected '}' before end of string; write a literal brace as {{ or }}"),
    ],
)
def test_a_bad_question_template_is_a_one_line_error(template, message, questions, capsys):
    assert message in eval_error(questions, "--question-template", template, capsys=capsys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no such file"),
        ("data: [unclosed", "not a readable YAML file"),
        ("model: {name_or_path: tiny}\n", "no data section, so not an apo train config"),
        ("data:\n  prompt: {system: hi}\n", "data.prompt.system: Extra inputs are not permitted"),
        ("data:\n  prompt: {question_template: hi}\n", "data.prompt.question_template: no {"),
    ],
)
def test_a_bad_prompt_from_config_is_a_one_line_error(text, message, questions, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    if text is not None:
        config.write_text(text)
    error = eval_error(questions, "--prompt-from", str(config), capsys=capsys)
    assert f"--prompt-from {config}: {message}" in error


def test_compare_warns_when_prompts_differ(default_run, flags_run):
    result = apo("eval", "--compare", str(default_run[0]), str(flags_run[0]))
    assert result.returncode == 0, result.stderr
    warning, table = result.stdout.split("\n\n", 1)
    assert warning.startswith("warning: these runs were evaluated under different settings")
    assert "- prompt.system_prompt: default = 'A conversation between" in warning
    assert ", flags = none" in warning
    assert "- prompt.question_template: default = '{question}', flags = 'Q: {question}'" in warning
    assert "max_new_tokens" not in warning
    assert table.startswith("| benchmark | default | flags | Δ flags |")


def test_compare_does_not_warn_when_settings_agree(default_run, tmp_path):
    same = tmp_path / "same"
    same.mkdir()
    summary = json.loads((default_run[0] / "summary.json").read_text())
    summary["settings"]["temperature"] = 0.0  # what None means with one sample
    (same / "summary.json").write_text(json.dumps(summary))
    result = apo("eval", "--compare", str(default_run[0]), str(same))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("| benchmark | default | same |")
