"""Fixtures shared with the trainer tests."""

from tests.trainer.conftest import make_config  # noqa: F401
