"""One run per folder (the lock), and apo demo's mark on its own folders."""

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from apo.checkpoint import clean_staging
from apo.run_folder import (
    DEMO_MARK,
    LOCK_FILE,
    RunFolderBusy,
    prepare_demo_folder,
    run_lock,
)


def hold_lock_in_another_process(folder):
    code = (
        "import sys, time\n"
        "from apo.run_folder import run_lock\n"
        f"with run_lock({str(folder)!r}, 'apo train other.yaml'):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_is_refused_while_the_first_holds_the_folder(tmp_path):
    holder = hold_lock_in_another_process(tmp_path)
    try:
        with pytest.raises(RunFolderBusy) as refused, run_lock(tmp_path, "apo train"):
            pass
        message = str(refused.value)
        assert str(tmp_path) in message and f"pid {holder.pid}" in message
        assert "apo train other.yaml" in message
    finally:
        holder.communicate("\n", timeout=30)
    with run_lock(tmp_path, "apo train"):  # released when the holder ended
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)  # fmt: skip
    holder = {"pid": int(dead.stdout), "host": socket.gethostname(), "command": "apo demo"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(holder))
    with caplog.at_level(logging.WARNING), run_lock(tmp_path, "apo train"):
        pass
    assert f"taking over the lock of pid {holder['pid']}" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()


def test_the_lock_is_released_after_an_exception_and_is_reentrant(tmp_path):
    with pytest.raises(RuntimeError), run_lock(tmp_path, "apo demo"):
        with run_lock(tmp_path, "apo train"):  # the demo's trainer, same process
            assert (tmp_path / LOCK_FILE).exists()
        assert (tmp_path / LOCK_FILE).exists()  # the outer hold goes on
        raise RuntimeError("boom")
    assert not (tmp_path / LOCK_FILE).exists()


def fake_training_run(folder):
    (folder / "checkpoints" / "step-00000002").mkdir(parents=True)
    (folder / "checkpoints" / "step-00000002" / "trainer_state.json").write_text("{}")
    (folder / "metrics.jsonl").write_text('{"step": 1}\n')


def test_the_demo_refuses_a_folder_it_did_not_write_and_deletes_nothing(tmp_path):
    fake_training_run(tmp_path)
    with pytest.raises(ValueError, match="--overwrite") as refused:
        prepare_demo_folder(tmp_path)
    assert str(tmp_path) in str(refused.value)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n'
    assert (tmp_path / "checkpoints" / "step-00000002" / "trainer_state.json").exists()
    prepare_demo_folder(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [DEMO_MARK]


def test_the_demo_replaces_its_own_folders(tmp_path):
    run = tmp_path / "demo"
    prepare_demo_folder(run)
    (run / "metrics.jsonl").write_text("old\n")
    with run_lock(run, "apo demo"):
        prepare_demo_folder(run)
        assert sorted(p.name for p in run.iterdir()) == sorted([DEMO_MARK, LOCK_FILE])


def test_interrupted_checkpoint_writes_are_cleaned_and_a_replaced_one_restored(tmp_path):
    (tmp_path / ".tmp-step-00000004").mkdir()
    (tmp_path / ".old-step-00000003").mkdir()  # its new copy never arrived: put it back
    (tmp_path / "step-00000002").mkdir()
    (tmp_path / ".old-step-00000002").mkdir()  # the new copy is in place
    assert clean_staging(tmp_path) == [".old-step-00000002", ".tmp-step-00000004"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000002", "step-00000003"]
