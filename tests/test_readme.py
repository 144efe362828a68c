"""The README's commands and the facts it states are the code's: they must not drift apart."""

import re
from pathlib import Path

import pytest

from apo.algorithms import DADS_SCHEDULES

ROOT = Path(__file__).resolve().parents[1]


def test_readme_shows_the_test_command_that_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    match = re.search(r"^TEST_COMMAND='(.+)'$", ci, flags=re.MULTILINE)
    assert match, ".ci/run must define TEST_COMMAND"
    readme = (ROOT / "README.md").read_text()
    assert match.group(1) in readme


def test_readme_shows_the_main_job_command_near_the_top():
    readme = (ROOT / "README.md").read_text()
    top = readme[: readme.index("## ", readme.index("## ") + 1)]  # up to the second section
    assert "pip install . && apo " in top
    assert "pytest" in top


def test_readme_python_examples_run(monkeypatch):
    # The examples register new variants; keep the global registries as they were.
    monkeypatch.setattr(DADS_SCHEDULES, "_entries", dict(DADS_SCHEDULES._entries))
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        # Not "__main__": a block's `if __name__ == "__main__":` part (training) is skipped.
        exec(compile(block, "README.md", "exec"), {"__name__": "README"})


def test_readme_json_examples_parse():
    import json

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        json.loads(block)


def demo_paragraph() -> str:
    """The README's description of `apo demo`, as one line."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("`apo demo` takes")
    return " ".join(readme[start : readme.index("\n\n", start)].split())


def test_readme_states_the_demos_facts_as_the_code_has_them():
    import math

    from safetensors import safe_open

    from apo.cli import build_parser
    from apo.demo.settings import START_MODEL, DemoSettings, demo_config

    settings, text = DemoSettings(), demo_paragraph()
    assert (
        f"for {settings.steps} steps of {settings.prompts_per_step} prompts x "
        f"{settings.group_size} samples" in text
    )
    assert re.findall(r"pass@(\d+)", text) == [str(settings.eval_samples)]
    assert ("(with `batch.share_prompts` on)" in text) == settings.share_prompts
    assert f"(`{settings.output_dir}`)" in text
    with safe_open(START_MODEL / "model.safetensors", "pt") as weights:
        names = weights.keys()  # a safe_open handle is not iterable
        parameters = sum(math.prod(weights.get_slice(k).get_shape()) for k in names)
    assert f"{parameters / 1e6:.1f} M parameters" in text
    # the command's defaults are the settings' defaults
    args = build_parser().parse_args(["demo"])
    assert (args.output, args.share_prompts) == (settings.output_dir, settings.share_prompts)
    assert args.steps is None and args.eval_samples is None  # DemoSettings decides
    # "`apo demo` uses both" speed options
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "`apo demo` uses both (`--no-share-prompts` turns the first off)" in readme
    batch = demo_config(settings, {"train": "t", "reasoning": "r", "general": "g"}, ROOT).batch
    assert batch.share_prompts and batch.max_tokens_per_micro_batch is not None


def readme_commands() -> list[str]:
    """Every `apo ...` command of the README's shell blocks, placeholders filled."""
    readme = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL):
        for line in block.splitlines():
            for part in line.split("&&"):
                command = part.split("#")[0].strip()
                if command.startswith("apo ") and "[" not in command:  # not a synopsis
                    command = command.replace("$B", "--benchmark mathvista=DIR")
                    commands.append(command.replace(" ...", ""))
    return commands


@pytest.mark.parametrize("command", readme_commands())
def test_readme_commands_are_valid_command_lines(command):
    import shlex

    from apo.cli import build_parser

    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit:
        pytest.fail(f"README.md: `{command}` is not a valid apo command line")
