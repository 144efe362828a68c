"""The DeepSpeed settings apo refuses and the ones it owns (the 2-process ZeRO-2
runs are in tests/trainer/test_sharded.py)."""

import pytest

from apo.distributed import check_deepspeed_config, configure_deepspeed


def test_zero3_is_refused_with_the_alternatives():
    check_deepspeed_config({"zero_optimization": {"stage": 2}})
    check_deepspeed_config({})
    with pytest.raises(ValueError, match=r"ZeRO-3 is not supported .* Use ZeRO-2 .* or FSDP2"):
        check_deepspeed_config({"zero_optimization": {"stage": 3}})


def test_a_vision_tower_that_trains_is_refused(make_config, tiny):
    config = make_config()
    with pytest.raises(ValueError, match=r"model\.freeze_vision_tower: true"):
        configure_deepspeed({}, config, 2, tiny.model)


def test_apo_owns_accumulation_clipping_and_the_batch_records(make_config, tiny):
    from apo.models import freeze_vision_tower

    freeze_vision_tower(tiny.model)
    config = make_config(optim={"grad_clip": 0.5}, batch={"micro_batch_size": 3})
    ds = {"gradient_accumulation_steps": 8, "gradient_clipping": "auto", "zero_optimization": {}}
    configure_deepspeed(ds, config, 2, tiny.model)
    assert ds == {
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 0.5,
        "train_micro_batch_size_per_gpu": 3,
        "train_batch_size": 6,
        "zero_optimization": {},
    }
