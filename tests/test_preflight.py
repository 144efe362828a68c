"""Checks made before the model loads: optional trackers, resuming a checkpoint
saved with paths spelled otherwise."""

import pytest

from apo.config import TrainConfig
from apo.preflight import check_resumable
from apo.trainer import Trainer


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb"])
def test_a_missing_tracker_is_named_before_the_model_loads(make_config, monkeypatch, tracker):
    real_find_spec = __import__("importlib.util").util.find_spec
    monkeypatch.setattr(
        "apo.preflight.importlib.util.find_spec",
        lambda name, *a: None if name == tracker else real_find_spec(name, *a),
    )
    loads = []
    monkeypatch.setattr("apo.trainer.load_model", lambda *a, **k: loads.append(1))
    with pytest.raises(ValueError, match=f"logging.{tracker} is on but {tracker} is not installed"):
        Trainer(make_config(logging={tracker: True}))
    assert not loads


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
