"""The learning-rate schedule."""

import pytest

from apo.optim import lr_multiplier


@pytest.mark.parametrize(
    ("update", "kind", "expected"),
    [
        (0, "constant", 0.5),  # warmup over 2 updates: 1/2, then 1
        (1, "constant", 1.0),
        (5, "constant", 1.0),
        (2, "linear", 1.0),  # decay starts after warmup ...
        (11, "linear", 0.1),  # ... and ends at min_ratio on the last update
        (2, "cosine", 1.0),
        (11, "cosine", 0.1),
    ],
)
def test_learning_rate_schedule(update, kind, expected):
    assert lr_multiplier(update, total=12, warmup=2, kind=kind, min_ratio=0.1) == pytest.approx(
        expected
    )


def test_cosine_midpoint():
    # halfway through the decay: 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55
    assert lr_multiplier(5, total=11, warmup=0, kind="cosine", min_ratio=0.1) == pytest.approx(0.55)
