import re

import pytest
import torch
from transformers import Qwen2Config, ViTConfig

from apo.models import ModelConfig, load_model, resolve_dtype, vision_tower
from tests.helpers import tiny_text_model


@pytest.fixture(scope="module")
def text_model_path(tmp_path_factory, tiny_path):
    """A tiny text-only Qwen2 causal LM with the tiny tokenizer, saved like a real one."""
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("text-lm")
    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    tiny_text_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_tiny_model_loads_as_a_vision_language_model(tiny):
    assert tiny.is_multimodal
    assert type(tiny.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(tiny.processor).__name__ == "Qwen2_5_VLProcessor"
    assert tiny.tokenizer is tiny.processor.tokenizer
    assert next(tiny.model.parameters()).dtype == torch.float32  # 'auto' on CPU


def test_the_builtin_name_selects_the_tiny_model():
    loaded = load_model(ModelConfig())  # name_or_path defaults to "tiny"
    assert loaded.is_multimodal and "tiny-qwen2.5-vl" in loaded.path


def test_dtype_option(tiny_path):
    loaded = load_model(ModelConfig(name_or_path=tiny_path, dtype="bfloat16"))
    assert next(loaded.model.parameters()).dtype == torch.bfloat16


def test_auto_dtype_is_float32_without_a_gpu():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float16") == torch.float16


def test_freeze_vision_tower_freezes_only_the_vision_encoder(tiny_path):
    loaded = load_model(ModelConfig(name_or_path=tiny_path, freeze_vision_tower=True))
    tower = vision_tower(loaded.model)
    tower_ids = {id(p) for p in tower.parameters()}
    assert tower_ids and all(not p.requires_grad for p in tower.parameters())
    others = [p for p in loaded.model.parameters() if id(p) not in tower_ids]
    assert others and all(p.requires_grad for p in others)


def test_gradient_checkpointing_option(tiny_path):
    loaded = load_model(ModelConfig(name_or_path=tiny_path, gradient_checkpointing=True))
    checkpointing = getattr(loaded.model, "is_activation_checkpointing", None)
    if checkpointing is None:
        checkpointing = loaded.model.is_gradient_checkpointing
    assert checkpointing
    assert loaded.model.config.use_cache is False


def test_attention_implementation_option(tiny_path):
    loaded = load_model(ModelConfig(name_or_path=tiny_path, attn_implementation="eager"))
    assert loaded.model.config._attn_implementation == "eager"


def test_text_only_causal_lm_loads_with_its_tokenizer(text_model_path):
    loaded = load_model(ModelConfig(name_or_path=text_model_path))
    assert not loaded.is_multimodal
    assert loaded.processor is loaded.tokenizer
    assert type(loaded.model).__name__ == "Qwen2ForCausalLM"
    assert vision_tower(loaded.model) is None


def test_freezing_a_text_model_vision_tower_is_an_error(text_model_path):
    with pytest.raises(ValueError, match="has no vision encoder"):
        load_model(ModelConfig(name_or_path=text_model_path, freeze_vision_tower=True))


def test_missing_model_path_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=re.escape(f"cannot load model '{missing}'")):
        load_model(ModelConfig(name_or_path=missing))


def test_a_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"no readable config\.json"):
        load_model(ModelConfig(name_or_path=str(tmp_path)))


def test_unsupported_model_type_is_a_clear_error(tmp_path):
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="type 'vit', which is neither"):
        load_model(ModelConfig(name_or_path=str(tmp_path)))


def test_unknown_config_keys_are_rejected():
    with pytest.raises(ValueError, match="name_or_pth"):
        ModelConfig(name_or_pth="tiny")


def test_a_config_without_weights_is_a_clear_error(tmp_path):
    Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path
    )
    with pytest.raises(ValueError, match="cannot load the weights of model"):
        load_model(ModelConfig(name_or_path=str(tmp_path)))
