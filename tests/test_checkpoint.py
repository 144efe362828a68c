"""Checkpoint files: atomic renames, pruning, and half-written folders never picked."""

import json
import logging

import pytest

from apo.checkpoint import latest_checkpoint, list_checkpoints, read_trainer_state, save_checkpoint


class FakeAccelerator:
    """Just enough of accelerate's interface: one process writing a weights file."""

    is_main_process = True

    def __init__(self):
        self.saves = 0

    def wait_for_everyone(self):
        pass

    def save_state(self, directory, safe_serialization=True):
        self.saves += 1
        from pathlib import Path

        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "model.safetensors").write_text(f"weights {self.saves}")


def test_saves_are_renamed_into_place_and_pruned(tmp_path):
    accelerator = FakeAccelerator()
    for step in (1, 2, 3):
        save_checkpoint(accelerator, tmp_path, step, {"step": step}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    assert read_trainer_state(latest_checkpoint(tmp_path)) == {"step": 3}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_saving_the_same_step_again_replaces_it(tmp_path):
    accelerator = FakeAccelerator()
    save_checkpoint(accelerator, tmp_path, 5, {"step": 5, "try": 1}, keep_last=1)
    save_checkpoint(accelerator, tmp_path, 5, {"step": 5, "try": 2}, keep_last=1)
    [checkpoint] = list_checkpoints(tmp_path)
    assert json.loads((checkpoint / "trainer_state.json").read_text())["try"] == 2
    assert (checkpoint / "model.safetensors").read_text() == "weights 2"


def test_half_written_folders_are_never_picked(tmp_path):
    save_checkpoint(FakeAccelerator(), tmp_path, 1, {"step": 1}, keep_last=3)
    (tmp_path / ".tmp-step-00000002").mkdir()  # a crash while writing step 2
    (tmp_path / "step-00000003").mkdir()  # no trainer_state.json: incomplete
    assert latest_checkpoint(tmp_path).name == "step-00000001"
    with pytest.raises(ValueError, match="not a complete apo checkpoint"):
        read_trainer_state(tmp_path / "step-00000003")
    assert latest_checkpoint(tmp_path / "nowhere") is None


def test_the_tied_weights_notice_of_accelerate_is_silenced_where_apo_saves():
    """accelerate says "Removed shared tensor" on every save of a model with tied
    embeddings; the model ties them again on load, so apo's checkpoints drop the notice.
    The records are logged here on accelerate's logger directly (whether accelerate
    itself logs depends on its process state) and caught by a handler of this test's
    own (pytest's capture handlers live for the session and may carry filters that
    apo's console set up in an earlier test)."""
    from apo.checkpoint import tied_weights_notice_silenced

    class Caught(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    target, caught = logging.getLogger("accelerate.utils.other"), Caught()
    notice = "Removed shared tensor {'lm_head.weight'} while saving. This should be OK"
    level = target.level
    target.addHandler(caught)
    target.setLevel(logging.WARNING)
    try:
        with tied_weights_notice_silenced():
            target.warning(notice)
            target.warning("another notice")
        assert caught.messages == ["another notice"]
        target.warning(notice)
        assert caught.messages[-1] == notice  # elsewhere: as it was
    finally:
        target.removeHandler(caught)
        target.setLevel(level)
