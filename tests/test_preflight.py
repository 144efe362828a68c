"""Checks made before the model loads."""

import pytest

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
