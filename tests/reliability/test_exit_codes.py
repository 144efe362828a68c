"""`apo train`'s exit codes: each code of docs/RELIABILITY.md's table, produced by a
real run, and no other code documented."""

import re
import signal

import pytest

from tests.reliability.test_signals import start_training, wait_for_first_step
from tests.trainer.conftest import ROOT, VARIED
from tests.trainer.test_distributed_and_cli import apo

REWARDS_THAT_FAIL = {
    "components": [{"name": "format"}, {"name": f"{VARIED}:broken"}],
    "correctness": "format",
    "num_workers": 1,
    "max_failing_steps": 1,
}
CASES = {  # code: (sections of the run, signal sent after the first step, words printed)
    0: ({"training": {"max_steps": 1, "seed": 0}}, None, "trained model:"),
    3: ({"rewards": REWARDS_THAT_FAIL}, None, "resume from"),
    130: ({"training": {"max_steps": 500, "seed": 0}}, signal.SIGINT, "checkpoint saved"),
    143: ({"training": {"max_steps": 500, "seed": 0}}, signal.SIGTERM, "checkpoint saved"),
}


def documented_codes() -> set[int]:
    text = (ROOT / "docs" / "RELIABILITY.md").read_text()
    table = text.split("Exit codes of `apo train`:")[1].split("## ")[0]
    return {
        int(code) for row in re.findall(r"^\| ([\d /]+) \|", table, re.M) for code in row.split("/")
    }


def test_the_table_documents_exactly_the_codes_tested():
    assert documented_codes() == {2, *CASES}


@pytest.mark.slow
def test_bad_input_exits_with_2(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"model:\n  name_or_path: tiny\ndata:\n  path: {tmp_path}/missing.jsonl\n")
    done = apo("train", str(config), "--output", str(tmp_path / "run"))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "missing.jsonl" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("code", CASES)
@pytest.mark.slow
def test_apo_train_exits_with_the_documented_code(tmp_path, make_config, code):
    sections, signum, printed = CASES[code]
    process, run = start_training(tmp_path, make_config, **sections)
    if signum is not None:
        wait_for_first_step(run, process)
        process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    assert process.returncode == code, err[-2000:]
    assert "Traceback" not in err
    assert printed in out
