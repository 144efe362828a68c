"""Failures shared between processes: what a process reports, what every process raises."""

import pytest
import torch

from apo.agreement import (
    AgreedFailure,
    all_reduce_mean_gradients,
    raise_agreed,
    report_of,
    run_agreed,
)
from apo.out_of_memory import OutOfMemory, is_out_of_memory, retry_halving


def test_reports_keep_out_of_memory_apart_from_other_errors():
    assert report_of(None) is None
    assert report_of(torch.OutOfMemoryError("CUDA out of memory")) == (
        "out-of-memory",
        "CUDA out of memory",
    )
    assert report_of(OutOfMemory("lower the batch")) == ("out-of-memory-final", "lower the batch")
    assert report_of(ValueError("bad row")) == ("error", "ValueError: bad row")


def test_every_process_raises_the_first_failure_naming_its_process():
    raise_agreed([None, None])  # nobody failed: nothing raised
    with pytest.raises(AgreedFailure, match=r"^process 1: ValueError: bad row$"):
        raise_agreed([None, ("error", "ValueError: bad row")])
    with pytest.raises(AgreedFailure, match=r"process 0: .*\(and 1 more process\(es\) failed\)"):
        raise_agreed([("error", "a"), ("error", "b")])
    with pytest.raises(torch.OutOfMemoryError, match="process 1: CUDA") as retryable:
        raise_agreed([None, ("out-of-memory", "CUDA out of memory")])
    assert is_out_of_memory(retryable.value)  # so retry_halving retries on every process
    with pytest.raises(OutOfMemory, match="process 1: lower"):
        raise_agreed([None, ("out-of-memory-final", "lower the batch")])


def test_run_agreed_gathers_reports_and_passes_results_through():
    seen = []

    def gather(reports):  # another process failed
        seen.extend(reports)
        return [*reports, ("error", "RuntimeError: pool broke")]

    with pytest.raises(AgreedFailure, match="process 1: RuntimeError: pool broke"):
        run_agreed(lambda: 42, gather, processes=2)
    assert seen == [None]
    assert run_agreed(lambda: 42, lambda reports: [*reports, None], processes=2) == 42
    with pytest.raises(ValueError, match="alone"):  # one process: the error as it is
        run_agreed(lambda: (_ for _ in ()).throw(ValueError("alone")), gather, processes=1)


def test_an_agreed_out_of_memory_is_retried_and_named_when_retries_run_out():
    def attempt(size):
        raise_agreed([None, ("out-of-memory", "CUDA out of memory")])

    sizes = []
    with pytest.raises(OutOfMemory, match=r"^process 1: no fit at 1$"):
        retry_halving(attempt, 4, on_halve=lambda old, new: sizes.append(new),
                      advice=lambda size: f"no fit at {size}")  # fmt: skip
    assert sizes == [2, 1]


def test_gradients_are_averaged_and_unused_parameters_stay_without_one():
    used, unused_here, unused_everywhere = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    used.grad = torch.tensor([2.0, 4.0])
    other_process = {
        "has": torch.tensor([1.0, 1.0, 0.0]),
        "grads": torch.tensor([4.0, 0.0, 6.0, 8.0]),
    }

    def reduce_mean(tensor):  # this process and another, averaged
        other = other_process["has"] if tensor.numel() == 3 else other_process["grads"]
        return (tensor + other) / 2

    all_reduce_mean_gradients([used, unused_here, unused_everywhere, frozen], reduce_mean)
    assert used.grad.tolist() == [3.0, 2.0]
    assert unused_here.grad.tolist() == [3.0, 4.0]  # zero here, [6, 8] on the other
    assert unused_everywhere.grad is None and frozen.grad is None
