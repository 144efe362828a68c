import pytest
import torch

from apo.models import (
    AdapterDisabledReference,
    FrozenReference,
    LoraConfig,
    apply_lora,
    build_reference,
    build_sequence_batch,
    encode_prompts,
    has_adapters,
    sequence_log_probs,
    vision_tower,
)
from tests.helpers import chat_prompt, image


def _batch(loaded):
    prompts = [
        chat_prompt(loaded.processor, "How many circles?", [image()]),
        chat_prompt(loaded.processor, "2 + 3?", []),
    ]
    inputs = encode_prompts(
        loaded.processor, [p.text for p in prompts], [p.images for p in prompts], True
    )
    return build_sequence_batch(inputs, [[11, 12, 13], [21, 22]], loaded.tokenizer.pad_token_id)


def _perturb_adapters(model):
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)


def test_lora_trains_only_adapters_of_the_language_model(tiny):
    model = apply_lora(tiny.model, LoraConfig(enabled=True, r=4, alpha=8))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert not any("visual" in name for name in trainable)
    assert not any(
        "lora_" in name for name, _ in vision_tower(model.get_base_model()).named_parameters()
    )
    assert has_adapters(model)


def test_lora_target_modules_are_configurable(tiny):
    model = apply_lora(tiny.model, LoraConfig(enabled=True, r=2, target_modules=["q_proj"]))
    adapted = {
        name.split(".lora_")[0].rsplit(".", 1)[-1]
        for name, _ in model.named_parameters()
        if "lora_A" in name
    }
    assert adapted == {"q_proj"}


def test_bad_lora_targets_are_a_clear_error(tiny):
    with pytest.raises(ValueError, match="cannot apply LoRA"):
        apply_lora(tiny.model, LoraConfig(enabled=True, target_modules=["no_such_module"]))


def test_adapter_disabled_reference_is_the_base_model(tiny):
    batch = _batch(tiny)
    with torch.no_grad():
        base = sequence_log_probs(tiny.model, batch).logp
    policy = apply_lora(tiny.model, LoraConfig(enabled=True, r=4, alpha=8))
    _perturb_adapters(policy)
    reference = build_reference(policy)
    assert isinstance(reference, AdapterDisabledReference)
    with torch.no_grad():
        adapted = sequence_log_probs(policy, batch).logp
    assert not torch.allclose(adapted, base, atol=1e-3)  # the adapters do change the policy
    torch.testing.assert_close(reference.log_probs(batch), base, atol=1e-5, rtol=1e-5)
    # and the adapters are back on afterwards
    with torch.no_grad():
        torch.testing.assert_close(sequence_log_probs(policy, batch).logp, adapted)


def test_frozen_copy_does_not_follow_training(tiny):
    batch = _batch(tiny)
    reference = build_reference(tiny.model)
    assert isinstance(reference, FrozenReference)
    before = reference.log_probs(batch)
    optimizer = torch.optim.SGD(tiny.model.parameters(), lr=1.0)
    sequence_log_probs(tiny.model, batch).logp.sum().backward()
    optimizer.step()
    with torch.no_grad():
        moved = sequence_log_probs(tiny.model, batch).logp
    assert not torch.allclose(moved, before, atol=1e-3)
    torch.testing.assert_close(reference.log_probs(batch), before)
    assert all(not p.requires_grad for p in reference.model.parameters())


def test_frozen_copy_in_another_dtype(tiny):
    batch = _batch(tiny)
    reference = FrozenReference.copy_of(tiny.model, dtype=torch.bfloat16)
    assert next(reference.model.parameters()).dtype == torch.bfloat16
    logp = reference.log_probs(batch)
    assert logp.dtype == torch.float32 and logp.device == batch.response_ids.device
    with torch.no_grad():
        exact = sequence_log_probs(tiny.model, batch).logp
    torch.testing.assert_close(logp, exact, atol=0.1, rtol=0.05)


def test_reference_kinds(tiny):
    assert build_reference(tiny.model, "none") is None
    with pytest.raises(ValueError, match="needs a LoRA"):
        build_reference(tiny.model, "adapter_disabled")
    with pytest.raises(ValueError, match="unknown reference kind"):
        build_reference(tiny.model, "twin")
    policy = apply_lora(tiny.model, LoraConfig(enabled=True, r=2))
    assert isinstance(build_reference(policy, "copy"), FrozenReference)


def test_lora_on_a_text_model_adapts_every_target_without_a_vision_warning(tiny_path):
    import warnings

    from transformers import AutoTokenizer

    from tests.helpers import tiny_text_model

    model = tiny_text_model(AutoTokenizer.from_pretrained(tiny_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # peft: "no modules were excluded"
        policy = apply_lora(model, LoraConfig(enabled=True, r=2))
    adapted = {name.split(".")[-4] for name, _ in policy.named_parameters() if "lora_A" in name}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
