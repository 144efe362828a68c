"""The backends' differences, each alone: where gradients sync, how the loss is
scaled, how a step is clipped and applied or skipped."""

import contextlib
import math

import pytest
import torch

from apo.distributed import Backend, DeepSpeedBackend, FSDP2Backend


class FakeAccelerator:
    """accelerate's calls, on ``num_processes`` processes that all see this one's
    tensors; ``synced`` records, per micro-batch, whether its backward synced."""

    def __init__(self, num_processes: int = 1):
        self.num_processes = num_processes
        self.device = torch.device("cpu")
        self.synced: list[bool] = []

    def reduce(self, tensor, op):
        return tensor * self.num_processes if op == "sum" else tensor

    @contextlib.contextmanager
    def no_sync(self, model):
        self.synced.append(False)
        yield

    def backward(self, loss):
        loss.backward()

    def clip_grad_norm_(self, parameters, max_norm):
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)


@pytest.fixture
def accelerator():
    return FakeAccelerator()


def linear_backend(accelerator, cls=Backend):
    model = torch.nn.Linear(2, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    return cls(accelerator, model, optimizer)


def test_one_process_accumulates_every_micro_batch_then_clips_and_steps(accelerator):
    backend = linear_backend(accelerator)
    inputs = [torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 4.0]])]
    backend.accumulate(inputs, lambda x: backend.backward(backend.model(x).sum()))
    assert backend.model.weight.grad.tolist() == [[3.0, 4.0]]
    before = backend.model.weight.detach().clone()
    assert backend.clip_and_step(1.0) == pytest.approx(5.0)
    assert torch.allclose(before - backend.model.weight, torch.tensor([[0.6, 0.8]]))


def test_a_nonfinite_gradient_is_not_applied(accelerator):
    backend = linear_backend(accelerator)
    backend.model.weight.grad = torch.tensor([[math.nan, 1.0]])
    before = backend.model.weight.detach().clone()
    assert math.isnan(backend.clip_and_step(None))
    assert torch.equal(before, backend.model.weight)


def test_gradients_sync_only_in_the_last_backward(accelerator):
    backend = linear_backend(accelerator)
    backend.accumulate([1, 2, 3], lambda item: item)
    assert accelerator.synced == [False, False]  # the third ran outside no_sync


def test_the_loss_is_scaled_by_the_processes_whose_average_the_backend_takes():
    backend = linear_backend(FakeAccelerator(num_processes=2))
    backend.backward(backend.model(torch.tensor([[1.0, 2.0]])).sum())
    assert backend.model.weight.grad.tolist() == [[2.0, 4.0]]
    assert not backend.retries_together  # several processes, accelerate's own sync


def test_one_process_retries_out_of_memory_and_shares_prompts(accelerator):
    backend = linear_backend(accelerator)
    assert backend.retries_together and backend.shares_prompts
    assert backend.agreed(lambda: 7) == 7


class FakeEngine:
    """What DeepSpeedBackend calls on DeepSpeed's engine."""

    def __init__(self, applied: bool):
        self.applied, self.boundaries, self.steps = applied, [], 0

    def set_gradient_accumulation_boundary(self, last):
        self.boundaries.append(last)

    def step(self):
        self.steps += 1

    def was_step_applied(self):
        return self.applied

    def get_global_grad_norm(self):
        return 2.5


@pytest.mark.parametrize("applied", [True, False])
def test_deepspeed_marks_the_last_micro_batch_and_steps_once(accelerator, applied):
    engine = FakeEngine(applied)
    backend = DeepSpeedBackend(accelerator, engine, optimizer=None)
    backend.accumulate([1, 2, 3], lambda item: item)
    assert engine.boundaries == [False, False, True]
    norm = backend.clip_and_step(1.0)
    assert engine.steps == 1 and (norm == 2.5 if applied else math.isnan(norm))
    assert not backend.shares_prompts


def test_fsdp2_reduces_every_micro_batch(accelerator):
    backend = linear_backend(accelerator, FSDP2Backend)
    assert backend.accumulate([1, 2], lambda item: item) == [1, 2]
    assert accelerator.synced == []
    assert not backend.shares_prompts
