"""FSDP2 helpers on a one-process gloo group (the 2-process runs are in
tests/trainer/test_sharded.py)."""

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from apo.models import check_sharding, fsdp_modules, gathered_weights, vision_tower


@pytest.fixture
def process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def shard_decoder_layers(model) -> None:
    for layer in model.model.language_model.layers:
        fully_shard(layer)
    fully_shard(model)


def is_sharded(parameter) -> bool:
    return isinstance(parameter, DTensor)


def test_gathered_weights_hold_whole_tensors_and_give_them_back(process_group, tiny):
    model = tiny.model
    shard_decoder_layers(model)
    layer = model.model.language_model.layers[0]
    assert is_sharded(layer.mlp.up_proj.weight)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad(), gathered_weights(model):
        assert not any(is_sharded(p) for p in model.parameters())
        model(input_ids=ids)  # forward passes inside keep everything gathered
        assert not is_sharded(layer.mlp.up_proj.weight)
        layer.mlp(model.model.language_model.embed_tokens(ids))  # a part, without FSDP's hooks
    assert is_sharded(layer.mlp.up_proj.weight)
    # Afterwards FSDP2 behaves as if the block never ran: the root keeps its
    # weights after forward (the chunked log-prob head reads the head there),
    # the layers give theirs back.
    model(input_ids=ids)
    assert not is_sharded(model.lm_head.weight)
    assert is_sharded(layer.mlp.up_proj.weight)


def test_a_model_without_fsdp_passes_through(tiny):
    with gathered_weights(tiny.model):
        pass
    assert fsdp_modules(tiny.model) == []
    check_sharding(tiny.model, lora=True)  # nothing sharded: nothing to refuse


def test_sharding_the_vision_blocks_is_refused_with_the_fix(process_group, tiny):
    model = tiny.model
    for block in vision_tower(model).blocks:
        fully_shard(block)
    shard_decoder_layers(model)
    with pytest.raises(ValueError, match=r"vision tower's .* Wrap only the language model's"):
        check_sharding(model, lora=False)


def test_decoder_layers_sharded_pass_but_not_with_lora(process_group, tiny):
    shard_decoder_layers(tiny.model)
    check_sharding(tiny.model, lora=False)
    with pytest.raises(ValueError, match=r"lora\.enabled with FSDP is not supported"):
        check_sharding(tiny.model, lora=True)
