"""The README's commands are the ones CI runs: they must not drift apart."""

import re
from pathlib import Path

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
