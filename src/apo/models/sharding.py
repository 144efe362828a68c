"""A model sharded by FSDP2 (``fully_shard``), gathered whole while it generates."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn
from torch.distributed.fsdp import FSDPModule

from apo.models.loading import vision_tower


def fsdp_modules(model: nn.Module) -> list[FSDPModule]:
    """The modules of ``model`` that FSDP2 shards, in module order."""
    return [module for module in model.modules() if isinstance(module, FSDPModule)]


@contextlib.contextmanager
def gathered_weights(model: nn.Module) -> Iterator[None]:
    """Every FSDP2-sharded weight of ``model`` gathered whole for the block.

    A sharded forward pass all-gathers each block's weights: a collective every
    process must join. Generation runs a different number of passes on each
    process (rows end at different lengths; a process without images never runs
    the vision tower), so the processes would fall out of step. Here every
    module is gathered once, in module order on every process, and kept whole
    (no resharding after each forward) until the block ends: the passes inside
    hold no collective. Costs one full copy of the weights per process while
    the block runs, as DeepSpeed ZeRO-3's gather for generation does. A model
    without FSDP2 modules passes through unchanged.
    """
    modules = fsdp_modules(model)
    if not modules:
        yield
        return
    states = [module._get_fsdp_state() for module in modules]
    # FSDP2's runtime switch (set_reshard_after_forward) cannot say which value to
    # restore, and it disables the heuristic by which the root, at its lazy
    # initialisation (its first forward), keeps its weights after forward. So:
    # initialise first, then save and restore what the switch changes.
    states[0]._lazy_init()
    saved = [
        (
            state._auto_reshard_after_forward,
            [group.post_forward_mesh_info for group in state._fsdp_param_groups],
        )
        for state in states
    ]
    for module in modules:
        module.unshard()
    for module in modules:
        module.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for module, state, (auto, infos) in zip(modules, states, saved, strict=True):
            state._auto_reshard_after_forward = auto
            for group, info in zip(state._fsdp_param_groups, infos, strict=True):
                group.post_forward_mesh_info = info
            module.reshard()


def check_sharding(model: nn.Module, lora: bool) -> None:
    """ValueError, naming the fix, when FSDP2 shards ``model`` in a way apo cannot
    train: with LoRA, or with the vision tower's blocks sharded on their own."""
    if not fsdp_modules(model):
        return
    if lora:
        raise ValueError(
            "lora.enabled with FSDP is not supported: the LoRA adapter's checkpoint is "
            "saved and loaded whole, not sharded. LoRA trains a small share of the "
            "weights: launch it with DDP or DeepSpeed ZeRO-2, or train all weights with FSDP"
        )
    tower = vision_tower(model) or nn.Module()
    sharded = [type(m).__name__ for m in tower.modules() if isinstance(m, FSDPModule)]
    if sharded:
        raise ValueError(
            f"FSDP shards the vision tower's {sharded[0]} modules on their own: a process "
            "whose micro-batch has no image never runs them, skips their weight gathers "
            "and leaves the other processes waiting. Wrap only the language model's "
            "decoder layers (fsdp_transformer_layer_cls_to_wrap, e.g. "
            "Qwen2_5_VLDecoderLayer, as in configs/accelerate/fsdp2.yaml)"
        )
