"""The policy update on its own: micro-batches recut to the size a retry is given,
global denominators, and the NaN/inf streak (no model: the forward and backward of a
micro-batch are stubbed)."""

from dataclasses import dataclass, field

import pytest
import torch

from apo.batching import StepBatcher
from apo.config import TrainConfig
from apo.training.failures import NonFiniteTraining
from apo.training.update import PolicyUpdate, global_denominator, recut


@dataclass
class Rows:
    """A stand-in micro-batch: its rows, and a loss mask of ``tokens`` per row."""

    rows: list[int]
    tokens: int = 3

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def loss_mask(self) -> torch.Tensor:
        return torch.ones(len(self.rows), self.tokens, dtype=torch.bool)


class RowBatcher(StepBatcher):
    """StepBatcher's recut over :class:`Rows`."""

    def __init__(self) -> None:
        pass

    def halves(self, micro: Rows) -> list[Rows]:
        half = len(micro) // 2
        return [Rows(micro.rows[:half]), Rows(micro.rows[half:])]


@dataclass
class OneProcess:
    """A backend of one process whose updates have the gradient norms ``norms``."""

    norms: list[float] = field(default_factory=list)
    processes: int = 1
    retries_together: bool = True

    def reduce(self, tensor, op):
        return tensor

    def accumulate(self, items, run):
        return [run(item) for item in items]

    def clip_and_step(self, max_norm):
        return self.norms.pop(0) if self.norms else 1.0


class Steps:
    """A learning-rate schedule that counts the updates applied."""

    count = 0

    def step(self):
        self.count += 1


def make_update(backend=None, **batch) -> PolicyUpdate:
    config = TrainConfig.model_validate(
        {
            "model": {"name_or_path": "tiny"},
            "data": {"path": "rows.jsonl"},
            "batch": {"prompts_per_step": 2, "prompts_per_update": 1, "micro_batch_size": 4}
            | batch,
            "training": {"max_nonfinite_updates": 2},
        }
    )
    policy = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    return PolicyUpdate(
        config, policy, optimizer, Steps(), RowBatcher(), backend or OneProcess(), announce=False
    )


def fits_up_to(rows: int, seen: list[list[int]]):
    """A forward and backward that runs out of memory over more than ``rows`` rows."""

    def forward_backward(micro, denominator):
        seen.append(micro.rows)
        if len(micro) > rows:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return {"loss/total": float(len(micro))}

    return forward_backward


def test_recut_halves_only_micro_batches_over_the_size():
    cut = recut([Rows([0, 1, 2, 3]), Rows([4, 5])], 2, RowBatcher())
    assert [m.rows for m in cut] == [[0, 1], [2, 3], [4, 5]]


def test_recut_to_a_size_that_fits_keeps_the_micro_batches():
    micro_batches = [Rows([0, 1]), Rows([2])]
    assert recut(micro_batches, 2, RowBatcher()) == micro_batches


def test_an_update_out_of_memory_is_retried_recut_to_the_size_given():
    update = make_update()
    seen = []
    update.forward_backward = fits_up_to(2, seen)
    updates = [[Rows([0, 1, 2, 3])], [Rows([4, 5, 6, 7])]]
    result = update.run(updates, step=1)
    # the first update fails whole, then runs in halves; the second is cut first
    assert seen == [[0, 1, 2, 3], [0, 1], [2, 3], [4, 5], [6, 7]]
    assert result.micro_batches == 4 and result.sums == {"loss/total": 8.0}
    assert [[m.rows for m in u] for u in updates] == [[[0, 1, 2, 3]], [[4, 5, 6, 7]]]  # as given


def test_the_fitted_size_cuts_the_next_steps_by_rows():
    update = make_update(max_tokens_per_micro_batch=64)
    assert (update.micro_batch_size, update.max_tokens) == (4, 64)
    update.forward_backward = fits_up_to(1, [])
    update.run([[Rows([0, 1, 2, 3])]], step=1)
    assert (update.micro_batch_size, update.max_tokens) == (1, None)


def test_one_row_that_does_not_fit_names_the_settings():
    from apo.out_of_memory import OutOfMemory

    update = make_update()
    update.forward_backward = fits_up_to(0, [])
    with pytest.raises(
        OutOfMemory, match=r"step 3 \(even one sequence.*micro_batch_size \(now 1\)"
    ):
        update.run([[Rows([0, 1])]], step=3)


def test_processes_that_cannot_retry_together_stop_at_once():
    from apo.out_of_memory import OutOfMemory

    update = make_update(OneProcess(processes=2, retries_together=False))
    seen = []
    update.forward_backward = fits_up_to(1, seen)
    with pytest.raises(OutOfMemory, match="no automatic retry with several processes"):
        update.run([[Rows([0, 1])]], step=1)
    assert seen == [[0, 1]]


def test_nonfinite_gradients_skip_updates_until_too_many_in_a_row():
    backend = OneProcess(norms=[float("nan"), 2.0, float("inf"), float("nan")])
    update = make_update(backend)
    update.forward_backward = fits_up_to(4, [])
    first = update.run([[Rows([0])], [Rows([1])]], step=1)  # nan, then a good one: reset
    assert first.skipped == 1 and first.grad_norms == [2.0]
    assert update.scheduler.count == 1  # the schedule moves with applied updates only
    with pytest.raises(NonFiniteTraining, match="2 updates in a row had a NaN/inf gradient"):
        update.run([[Rows([2])], [Rows([3])]], step=2)


@pytest.mark.parametrize(("token_mean", "expected"), [(True, 9.0), (False, 3.0)])
def test_the_denominator_counts_tokens_or_responses(token_mean, expected):
    micro_batches = [Rows([0, 1]), Rows([2])]
    assert global_denominator(micro_batches, token_mean, OneProcess()) == expected
