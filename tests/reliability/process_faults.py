"""``apo train`` with a fault on process 1 only, for the multi-process fault tests.

    APO_PROCESS_FAULT=oom_update python -m torch.distributed.run --nproc_per_node 2 \\
        -m tests.reliability.process_faults train CONFIG

Faults, on the process of rank 1 only:
- ``oom_update``: every forward pass with gradients runs out of memory;
- ``oom_update_above_1``: forward passes with gradients over more than one
  sequence run out of memory (a retry with smaller micro-batches fits);
- ``oom_generation``: every generation step runs out of memory;
- ``reward_error``: scoring the responses raises (a broken reward pool);
- ``nan``: every gradient of the output head is NaN.
"""

import os
import sys

import torch


def _out_of_memory() -> None:
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def _install(trainer, fault: str) -> None:
    from apo.models import unwrap_model

    model = unwrap_model(trainer.policy)

    def forward_fault(module, args, kwargs):
        rows = kwargs["input_ids"].shape[0] if "input_ids" in kwargs else 1
        generating = bool(kwargs.get("use_cache"))
        if fault == "oom_generation" and generating:
            _out_of_memory()
        if fault == "oom_update" and torch.is_grad_enabled():
            _out_of_memory()
        if fault == "oom_update_above_1" and torch.is_grad_enabled() and rows > 1:
            _out_of_memory()

    if fault.startswith("oom_"):
        model.register_forward_pre_hook(forward_fault, with_kwargs=True)
    elif fault == "reward_error":

        def broken(samples):
            raise RuntimeError("the reward pool broke")

        trainer.rewards.score = broken
    elif fault == "nan":
        head = model.get_output_embeddings().weight
        head.register_hook(lambda grad: grad * float("nan"))
    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    from apo.cli import main
    from apo.trainer import Trainer

    fault = os.environ["APO_PROCESS_FAULT"]
    setup = Trainer.setup

    def setup_with_fault(self, config, checkpoint):
        setup(self, config, checkpoint)
        if self.accelerator.process_index == 1:
            _install(self, fault)

    Trainer.setup = setup_with_fault
    sys.exit(main(sys.argv[1:]))
