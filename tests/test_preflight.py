"""Checks before training: resuming a checkpoint saved with paths spelled otherwise."""

import pytest

from apo.config import TrainConfig
from apo.preflight import check_resumable


def test_a_path_saved_relative_to_the_current_folder_names_the_same_model(
    tmp_path, monkeypatch, caplog
):
    """Checkpoints saved before paths were config-relative hold them as typed."""
    for folder in ("base", "other"):
        (tmp_path / folder).mkdir()
    (tmp_path / "train.jsonl").write_text("")
    monkeypatch.chdir(tmp_path)
    config = TrainConfig.model_validate(
        {
            "model": {"name_or_path": str(tmp_path / "base")},
            "data": {"path": str(tmp_path / "train.jsonl")},
        }
    )
    saved = config.model_dump(mode="json")
    saved["model"]["name_or_path"], saved["data"]["path"] = "base", "train.jsonl"
    with caplog.at_level("WARNING", logger="apo"):
        check_resumable(tmp_path, saved, config, warn=True)
    assert not caplog.records
    saved["model"]["name_or_path"] = "other"
    with pytest.raises(ValueError, match="belongs to another model"):
        check_resumable(tmp_path, saved, config, warn=True)
