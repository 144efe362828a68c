"""How a step's prompts are shared between processes and its rows cut into micro-batches."""

from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from apo.batching import rank_positions, split_to_count, token_budget_cuts


def test_prompts_are_split_so_every_update_spans_every_process():
    # 8 prompts, updates of 4, 2 processes: update 0 = [0..3] -> rank 0 gets 0,1 and rank 1 gets 2,3
    assert rank_positions(8, 4, rank=0, world=2) == [0, 1, 4, 5]
    assert rank_positions(8, 4, rank=1, world=2) == [2, 3, 6, 7]
    assert rank_positions(8, 4, rank=0, world=1) == list(range(8))
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        rank_positions(8, 3, rank=0, world=2)


def test_token_budget_cuts_sort_rows_and_respect_the_budget():
    # (prompt, response) lengths; totals 30, 70, 20, 110, 40
    lengths = [(10, 20), (10, 60), (10, 10), (10, 100), (20, 20)]
    # sorted by total: rows 2 (20), 0 (30), 4 (40), 1 (70), 3 (110)
    # [2, 0]: 2 x (10 + 20) = 60; + row 4: 3 x (20 + 20) = 120 > 100: cut
    # [4]: 40; + row 1: 2 x (20 + 60) = 160 > 100: cut; [1]: 70; [3] alone (over budget)
    assert token_budget_cuts(lengths, 100) == [[2, 0], [4], [1], [3]]
    assert token_budget_cuts(lengths, 10_000) == [[2, 0, 4, 1, 3]]
    assert token_budget_cuts(lengths, 1) == [[2], [0], [4], [1], [3]]


@settings(max_examples=50)
@given(
    lengths=st.lists(st.tuples(st.integers(1, 50), st.integers(1, 50)), min_size=1, max_size=40),
    budget=st.integers(1, 400),
)
def test_token_budget_cuts_cover_every_row_once_within_the_budget(lengths, budget):
    cuts = token_budget_cuts(lengths, budget)
    assert sorted(i for cut in cuts for i in cut) == list(range(len(lengths)))
    for cut in cuts:
        padded = len(cut) * (max(lengths[i][0] for i in cut) + max(lengths[i][1] for i in cut))
        assert padded <= budget or len(cut) == 1


class _Micro:
    """Stands for a MicroBatch: a number of rows of a padded width."""

    def __init__(self, rows: int, width: int) -> None:
        self.rows, self.width = rows, width
        self.batch = SimpleNamespace(inputs={"input_ids": torch.zeros(rows, width)})

    def __len__(self) -> int:
        return self.rows


def _halves(micro):
    half = len(micro) // 2
    return [_Micro(half, micro.width), _Micro(len(micro) - half, micro.width)]


def test_split_to_count_halves_the_largest_micro_batch_first():
    parts = split_to_count([_Micro(4, 10), _Micro(3, 50), _Micro(1, 90)], 5, _halves)
    # 3 x 50 = 150 is the largest: [1 + 2 rows]; then 2 x 50 = 100 beats 4 x 10 = 40 and 90
    assert [(len(m), m.width) for m in parts] == [(4, 10), (1, 50), (1, 50), (1, 50), (1, 90)]
    with pytest.raises(ValueError, match="8 rows cannot make 9 micro-batches"):
        split_to_count(parts, 9, _halves)


def test_token_budget_cuts_count_a_shared_prompt_once():
    # Prompts 7 (50 tokens: rows 0, 2, 4) and 9 (40 tokens: rows 1, 3).
    lengths = [(50, 10), (40, 5), (50, 20), (40, 30), (50, 10)]
    groups = [7, 9, 7, 9, 7]
    # sorted by prompt length, prompt, response: 1, 3 | 0, 4, 2
    # [1, 3]: 1 x 40 + 2 x 30 = 100; + row 0: 2 x 50 + 3 x 30 = 190 > 100: cut
    # [0, 4]: 1 x 50 + 2 x 10 = 70; + row 2: 50 + 3 x 20 = 110 > 100: cut
    assert token_budget_cuts(lengths, 100, groups) == [[1, 3], [0, 4], [2]]
    # without sharing, every row pays for its prompt: far fewer rows per cut
    assert token_budget_cuts(lengths, 100) == [[1], [0], [4], [2], [3]]


@settings(max_examples=50)
@given(
    rows=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 50)), min_size=1, max_size=40),
    budget=st.integers(1, 400),
)
def test_shared_token_budget_cuts_cover_every_row_once_within_the_budget(rows, budget):
    groups = [group for group, _ in rows]
    lengths = [(10 + 7 * group, response) for group, response in rows]  # a prompt, a length
    cuts = token_budget_cuts(lengths, budget, groups)
    assert sorted(i for cut in cuts for i in cut) == list(range(len(rows)))
    for cut in cuts:
        prompts = {groups[i] for i in cut}
        cost = len(prompts) * max(lengths[i][0] for i in cut) + len(cut) * max(
            lengths[i][1] for i in cut
        )
        assert cost <= budget or len(cut) == 1


@pytest.mark.parametrize("share", [False, True])
def test_step_batcher_marks_the_rows_that_share_a_prompt(tiny, share):
    from apo.batching import StepBatcher
    from tests.helpers import chat_prompt, image

    first = chat_prompt(tiny.processor, "How many circles?", [image()])
    second = chat_prompt(tiny.processor, "What is 2 + 3?", [])
    batcher = StepBatcher(
        tiny.processor, tiny.tokenizer.pad_token_id, True, torch.device("cpu"), share_prompts=share
    )
    batch = batcher.sequence_batch([second, first, second], [[5], [6, 7], [8]])
    if not share:
        assert batch.distinct_prompts is None and batch.prompt_index is None
        return
    assert batch.prompt_index.tolist() == [0, 1, 0]
    ids = batch.distinct_prompts["input_ids"]
    assert ids.shape == (2, batch.prompt_length)
    # each row's prompt columns are its distinct prompt's, padding included
    torch.testing.assert_close(batch.inputs["input_ids"][:, : batch.prompt_length], ids[[0, 1, 0]])
    assert len(batch.distinct_prompts["image_grid_thw"]) == 1  # the one image, once
    # rows that all answer different prompts share nothing
    assert batcher.sequence_batch([first, second], [[5], [6]]).distinct_prompts is None
