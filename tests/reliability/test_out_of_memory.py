"""Out of memory in generation, log-prob passes and the update: split and retried
where that is exact, otherwise a clear error naming the settings to lower."""

import logging

import pytest
import torch

from apo.models import unwrap_model
from apo.out_of_memory import OutOfMemory, is_out_of_memory
from apo.rollout import SamplingConfig, TransformersEngine
from apo.trainer import Trainer
from tests.helpers import chat_prompt


def run_out_of_memory_above(module, rows: int, *, grad: bool | None = None) -> None:
    """Make ``module`` raise CUDA's out-of-memory error on batches over ``rows``
    (only with gradients on, or off, when ``grad`` says so)."""

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[0] > rows and grad in (None, torch.is_grad_enabled()):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    module.register_forward_pre_hook(hook, with_kwargs=True)


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in unwrap_model(trainer.policy).state_dict().items()}


def test_cpu_and_cuda_allocation_failures_are_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 1 GB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


@pytest.mark.parametrize(
    ("where", "setting"),
    [("update", "micro_batch_size"), ("log-prob pass", "logprob_batch_size")],
)
@pytest.mark.slow
def test_batches_are_halved_and_give_the_same_training(make_config, caplog, where, setting):
    """Batches of 4 that do not fit are retried as 2 + 2: the same weights as a run
    configured with batches of 2, and the smaller size is kept."""
    sections = {
        # responses independent of how generation is batched; two updates per step,
        # so the old log-probs need their own (no-grad) pass
        "rollout": {"group_size": 2, "max_new_tokens": 12, "seed_per_prompt": True},
        "batch": {
            "prompts_per_step": 4,
            "prompts_per_update": 2,
            "micro_batch_size": 4,
            "logprob_batch_size": 4,
        },
        "algorithm": {"beta": 0.05},
    }
    small = sections | {"batch": sections["batch"] | {setting: 2}}
    expected = Trainer(make_config("small", **small))
    expected.train()
    trainer = Trainer(make_config("retried", **sections))
    start = weights(trainer)
    # the policy runs with gradients in the update, without in the old-log-prob pass
    run_out_of_memory_above(unwrap_model(trainer.policy), 2, grad=where == "update")
    with caplog.at_level(logging.WARNING, logger="apo"):
        trainer.train()
    # once: the step's other update is re-cut at the same time
    assert caplog.text.count(f"out of memory in the {where} at step 1: retrying with") == 1
    assert f"batches of 2; set batch.{setting}=2" in caplog.text
    kept = {
        "update": trainer.update.micro_batch_size,
        "log-prob pass": trainer.log_probs.batch_size,
    }
    assert kept[where] == 2
    # Equal up to float rounding: the no-grad passes ran on batches of another shape.
    want, got = weights(expected), weights(trainer)
    apart = max((want[k] - got[k]).abs().max().item() for k in want)
    moved = max((want[k] - start[k]).abs().max().item() for k in want)
    print(f"{where}: weights {apart:.2e} apart after an update of {moved:.2e}")
    assert apart < 1e-3 * moved


@pytest.mark.slow
def test_one_sequence_too_many_is_a_clear_error(make_config):
    trainer = Trainer(make_config())
    run_out_of_memory_above(unwrap_model(trainer.policy), 0, grad=True)
    with pytest.raises(OutOfMemory, match="even one sequence per micro-batch") as error:
        trainer.train()
    for setting in ("batch.micro_batch_size (now 1)", "rollout.max_new_tokens (now 12)"):
        assert setting in str(error.value)


def test_generation_is_retried_with_fewer_prompts(tiny, caplog):
    """Greedy, so the split cannot change the responses."""
    engine = TransformersEngine(tiny.model, tiny.processor, tiny.tokenizer, True)
    prompts = [chat_prompt(tiny.processor, f"question {i}", []) for i in range(4)]
    sampling = SamplingConfig(group_size=2, temperature=0.0, max_new_tokens=6, max_batch_size=4)
    expected = engine.generate(prompts, sampling)
    run_out_of_memory_above(tiny.model, 2)  # 2 rows: one prompt's group
    with caplog.at_level(logging.WARNING, logger="apo"):
        retried = engine.generate(prompts, sampling)
    assert "out of memory generating for 4 prompts at once: retrying with 2 and 2" in caplog.text
    assert [r.response_ids for r in retried] == [r.response_ids for r in expected]
    assert [r.prompt_index for r in retried] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_generation_that_cannot_fit_one_prompt_names_the_settings(make_config):
    trainer = Trainer(make_config())
    run_out_of_memory_above(unwrap_model(trainer.policy), 0, grad=False)
    with pytest.raises(OutOfMemory, match=r"generating at step 1.*rollout\.group_size \(now 4\)"):
        trainer.train()
