"""How a step's prompts are shared between processes."""

import pytest

from apo.batching import rank_positions


def test_prompts_are_split_so_every_update_spans_every_process():
    # 8 prompts, updates of 4, 2 processes: update 0 = [0..3] -> rank 0 gets 0,1 and rank 1 gets 2,3
    assert rank_positions(8, 4, rank=0, world=2) == [0, 1, 4, 5]
    assert rank_positions(8, 4, rank=1, world=2) == [2, 3, 6, 7]
    assert rank_positions(8, 4, rank=0, world=1) == list(range(8))
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        rank_positions(8, 3, rank=0, world=2)
