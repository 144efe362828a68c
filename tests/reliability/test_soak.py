"""The soak test's short mode: resident memory stops growing after warm-up."""

import importlib.util
import json

from tests.trainer.conftest import ROOT


def load_soak():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "scripts" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slope_by_hand():
    soak = load_soak()
    assert soak.slope_per_100_steps([1, 2, 3], [10.0, 10.5, 11.0]) == 50.0


def test_memory_stops_growing(tmp_path, capsys):
    """40 steps with a checkpoint and an evaluation every 10 (the manual mode runs
    300; docs/RELIABILITY.md has its figures). A leak of a tensor per step would
    grow by tens of MiB per 100 steps; allocator noise stays within a few."""
    soak = load_soak()
    assert soak.main(["--steps", "40", "--warmup", "10", "--json", str(tmp_path / "s.json")]) == 0
    figures = json.loads((tmp_path / "s.json").read_text())
    assert "slope_mib_per_100_steps" in capsys.readouterr().out
    assert abs(figures["slope_mib_per_100_steps"]) < 10.0, figures
    assert figures["rss_max_after_warmup_mib"] - figures["rss_at_warmup_mib"] < 50.0, figures
