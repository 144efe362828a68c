"""The memory estimate: its arithmetic by hand, its properties, and against real tensors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from apo.config import TrainConfig
from apo.estimate import (
    CUDA_CONTEXT_BYTES,
    ModelShape,
    estimate_memory,
    layer_activation_bytes,
    model_shape,
)

# A small Qwen-like shape: 4 layers, h 64, i 128, 4 heads of 16, 2 KV heads.
SHAPE = ModelShape(
    parameters=1_000_000,
    vision_parameters=100_000,
    lora_parameters=10_000,
    lora_input_features=6 * 64 + 128,  # q, k, v, o, gate, up read h; down reads i
    layers=4,
    hidden=64,
    intermediate=128,
    heads=4,
    kv_heads=2,
    head_dim=16,
    vocab=1000,
)


def config(**sections) -> TrainConfig:
    raw = {
        "model": {"name_or_path": "tiny", "dtype": "bfloat16"},
        "data": {"path": "unused.jsonl", "max_prompt_length": 100},
        "rollout": {"group_size": 4, "max_new_tokens": 28, "max_batch_size": 2},
        "batch": {"prompts_per_step": 8, "prompts_per_update": 8, "micro_batch_size": 2},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return TrainConfig.model_validate(raw)


def test_kv_cache_by_hand():
    # 2 prompts at once x G 4 = 8 rows of 128 tokens; K and V of 4 layers x 2 heads x 16 x 2 B
    estimate = estimate_memory(config(), SHAPE)
    assert estimate.components["KV cache (rollout)"] == 8 * 128 * 2 * 4 * 2 * 16 * 2


def test_kv_cache_of_generate_and_of_greedy_decoding():
    generate = estimate_memory(config(rollout={"engine": "transformers"}), SHAPE)
    greedy = estimate_memory(config(rollout={"temperature": 0.0}), SHAPE)
    native = estimate_memory(config(), SHAPE)
    assert generate.components["KV cache (rollout)"] == native.components["KV cache (rollout)"]
    # greedy: one response per prompt, copied
    assert greedy.components["KV cache (rollout)"] * 4 == native.components["KV cache (rollout)"]


def test_rows_generating_at_once_are_the_process_share_when_smaller():
    one = estimate_memory(config(rollout={"max_batch_size": 64}), SHAPE)
    four = estimate_memory(config(rollout={"max_batch_size": 64}), SHAPE, processes=4)
    assert one.components["KV cache (rollout)"] == 4 * four.components["KV cache (rollout)"]
    assert four.components["DDP gradient buckets"] == four.components["gradients"] > 0


def test_full_fine_tuning_in_bf16_keeps_adamw_moments_in_bf16():
    estimate = estimate_memory(config(), SHAPE)
    assert estimate.components["policy weights"] == 2_000_000
    assert estimate.components["gradients"] == 2_000_000
    assert estimate.components["AdamW states"] == 2 * 2_000_000  # m and v, no master copy


def test_lora_states_are_float32_and_far_smaller():
    lora = estimate_memory(config(lora={"enabled": True}), SHAPE)
    assert lora.components["LoRA adapters"] == 4 * 10_000
    assert lora.components["gradients"] == 4 * 10_000
    assert lora.components["AdamW states"] == 8 * 10_000
    full = estimate_memory(config(), SHAPE)
    assert lora.components["AdamW states"] < full.components["AdamW states"]


def test_freezing_the_vision_tower_drops_its_gradients():
    frozen = estimate_memory(config(model={"freeze_vision_tower": True}), SHAPE)
    assert frozen.components["gradients"] == 2 * 900_000


def test_the_reference_with_lora_costs_nothing_and_a_copy_costs_a_model():
    assert estimate_memory(config(lora={"enabled": True}), SHAPE).components["reference model"] == 0
    copy = estimate_memory(config(reference={"dtype": "float32"}), SHAPE)
    assert copy.components["reference model"] == 4_000_000
    elsewhere = estimate_memory(config(reference={"device": "cpu"}), SHAPE)
    assert elsewhere.components["reference model"] == 0
    none = estimate_memory(config(reference={"kind": "none"}, algorithm={"beta": 0.0}), SHAPE)
    assert none.components["reference model"] == 0


def test_checkpointing_lowers_activations():
    plain = estimate_memory(config(), SHAPE)
    checkpointed = estimate_memory(config(model={"gradient_checkpointing": True}), SHAPE)
    name = "activations (update micro-batch)"
    assert checkpointed.components[name] < plain.components[name]
    assert (
        checkpointed.alternatives["activations without gradient checkpointing"]
        == (plain.components[name])
    )


def test_layer_activations_by_hand():
    # full fine-tuning in bf16: 26 h + 8 i bytes per token, + 4 bytes of log-sum-exp per head
    assert layer_activation_bytes(64, 128, 4, 2, activation_bytes=2) == 26 * 64 + 8 * 128 + 16
    # LoRA on the seven projections under autocast: 28 h + 8 i
    lora = layer_activation_bytes(
        64, 128, 4, 2, activation_bytes=2, lora_input_features=6 * 64 + 128
    )
    assert lora == 28 * 64 + 8 * 128 + 16


def test_phases_and_the_peak():
    estimate = estimate_memory(config(), SHAPE)
    assert set(estimate.phases) == {"generation", "update", "log-prob passes"}
    assert "KV cache (rollout)" not in estimate.phases["update"]
    # the trainer frees the gradients after each step's updates
    assert [p for p in estimate.phases if "gradients" in estimate.phases[p]] == ["update"]
    assert estimate.peak_bytes == max(estimate.phase_bytes(p) for p in estimate.phases)
    assert estimate.phase_bytes("update") > CUDA_CONTEXT_BYTES
    on_policy = estimate_memory(config(algorithm={"beta": 0.0}), SHAPE)
    assert "log-prob passes" not in on_policy.phases


def test_a_missing_model_config_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot load model"):
        model_shape(config(model={"name_or_path": str(tmp_path / "nowhere")}))


@pytest.fixture(scope="module")
def tiny_lora():
    from apo.models import LoraConfig, ModelConfig, apply_lora, load_model

    loaded = load_model(ModelConfig(name_or_path="tiny"))
    return apply_lora(loaded.model, LoraConfig(enabled=True, r=8))


def test_shape_counts_the_tiny_models_parameters_and_peft_adapters(tiny_lora):
    shape = model_shape(config(lora={"enabled": True, "r": 8}))
    lora = sum(p.numel() for name, p in tiny_lora.named_parameters() if "lora_" in name)
    base = sum(p.numel() for name, p in tiny_lora.named_parameters() if "lora_" not in name)
    assert (
        shape.lora_parameters
        == lora
        == sum(p.numel() for p in tiny_lora.parameters() if p.requires_grad)
    )
    assert shape.parameters == base


def test_predicted_states_equal_the_tensors_after_a_real_optimizer_step(tiny_lora):
    """Weights, adapters, gradients and AdamW moments of the tiny model, as allocated."""
    from apo.config import OptimConfig
    from apo.optim import build_optimizer

    trainable = [p for p in tiny_lora.parameters() if p.requires_grad]
    optimizer, _ = build_optimizer(tiny_lora, OptimConfig(), 10, "cpu")
    for p in trainable:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    states = [t for s in optimizer.state.values() for t in s.values() if t.dim() > 0]

    def size(tensors):
        return sum(t.numel() * t.element_size() for t in tensors)

    cfg = config(model={"dtype": "float32"}, lora={"enabled": True, "r": 8})
    estimate = estimate_memory(cfg, model_shape(cfg))
    weights = [p for name, p in tiny_lora.named_parameters() if "lora_" not in name]
    assert estimate.components["policy weights"] == size(weights)
    assert estimate.components["LoRA adapters"] == size(trainable)
    assert estimate.components["gradients"] == size(p.grad for p in trainable)
    assert estimate.components["AdamW states"] == size(states)
    for p in trainable:
        p.grad = None


ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=[p.name for p in SHIPPED_CONFIGS])
@pytest.mark.slow
def test_every_shipped_config_is_estimated_offline_from_the_command_line(path, tmp_path):
    """docs/MEMORY.md's first command: no network, no model cache (an empty HF_HOME)."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-m", "apo", "estimate-memory", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["peak_gib"] > 0
    assert "retry" not in result.stderr.lower() and "Traceback" not in result.stderr


def test_the_known_3b_shape_is_the_published_one(monkeypatch, tmp_path):
    """Qwen2.5-VL-3B-Instruct: 3.75 B parameters, 0.67 B in the vision encoder
    (docs/MEMORY.md's table comes from it)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    shape = model_shape(config(model={"name_or_path": "Qwen/Qwen2.5-VL-3B-Instruct"}))
    assert round(shape.parameters / 1e9, 2) == 3.75
    assert round(shape.vision_parameters / 1e9, 2) == 0.67
    assert (shape.layers, shape.hidden, shape.kv_heads, shape.vocab) == (36, 2048, 2, 151936)


def test_an_unknown_hub_id_offline_says_what_to_pass(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ValueError) as error:
        model_shape(config(model={"name_or_path": "someone/unknown-model"}))
    message = str(error.value)
    assert "'someone/unknown-model' is not a local folder" in message
    assert "pass model.name_or_path=FOLDER, a folder holding the model's config.json" in message
