import atexit
import os
import shutil
import tempfile

# Nothing in the test suite may reach a model or data hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Build the tiny model (and convert the real one) into a per-run cache unless the
# developer points at one; a cache made here is removed at exit (a converted real
# model takes 1 GB).
if "APO_CACHE" not in os.environ:
    os.environ["APO_CACHE"] = tempfile.mkdtemp(prefix="apo-test-cache-")
    atexit.register(shutil.rmtree, os.environ["APO_CACHE"], ignore_errors=True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(min(2, torch.get_num_threads()))
# Hypothesis's 200 ms deadline per example and its slow-generation health check are
# timings: on a loaded 2-core machine a slow example is noise, not a defect (speed is
# measured by benchmarks/, not by tests).
settings.register_profile("apo", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("apo")


@pytest.fixture(scope="session")
def tiny_path() -> str:
    from apo.models import tiny_model_path

    return str(tiny_model_path())


@pytest.fixture
def tiny(tiny_path):
    """A freshly loaded tiny model (tests may change it)."""
    from apo.models import ModelConfig, load_model

    torch.manual_seed(0)
    return load_model(ModelConfig(name_or_path=tiny_path))


# The tiny-run config builder of the trainer tests, for tests elsewhere that train.
from tests.trainer.conftest import make_config  # noqa: E402, F401
