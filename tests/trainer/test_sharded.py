"""FSDP2 and DeepSpeed ZeRO-2 on 2 CPU processes (gloo), as ``accelerate launch``
with configs/accelerate/fsdp2.yaml or deepspeed_zero2.yaml runs them: each trains
like one process, resumes exactly from its sharded checkpoints and exports
them (docs/DISTRIBUTED.md)."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from apo.checkpoint import DamagedCheckpoint, verify_checkpoint
from apo.config import merge
from apo.export import export_checkpoint
from apo.models import ModelConfig, load_model
from apo.tracking import read_metrics
from tests.trainer.conftest import ROOT
from tests.trainer.sharded_launch import CONFIGS, launch_environment
from tests.trainer.test_distributed_and_cli import apo, config_file

# Each mode trains two processes (a module fixture shared by every test here).
pytestmark = pytest.mark.slow

LAUNCHER = ROOT / "tests" / "trainer" / "sharded_launch.py"
SECTIONS = {
    # several micro-batches per update: the case where the head's gradient and
    # the tied embedding's must meet before FSDP reduces them
    "rollout": {"group_size": 4, "max_new_tokens": 10, "seed_per_prompt": True},
    "batch": {"prompts_per_step": 4, "prompts_per_update": 2, "micro_batch_size": 3},
    "checkpoint": {"every": 1, "keep_last": 2},
    "logging": {"samples_per_step": 0},
    "training": {"max_steps": 2, "seed": 3},
}
MODES = {  # accelerate config, and what the mode needs of apo's config
    "fsdp2": ("fsdp2.yaml", {}),
    # ZeRO-2 needs the vision tower frozen (a micro-batch of the text-only row gives
    # it no gradient); the one-process run freezes it too
    "zero2": ("deepspeed_zero2.yaml", {"model": {"freeze_vision_tower": True}}),
    "zero2-lora": (
        "deepspeed_zero2.yaml",
        {"model": {"freeze_vision_tower": True}, "lora": {"enabled": True}},
    ),
}


def sharded_train(mode: str, *args: str) -> subprocess.CompletedProcess:
    # fp32 as the one-process run: the yamls' bf16 is left to GPUs
    extra = {"OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    env = os.environ | launch_environment(CONFIGS / MODES[mode][0]) | extra
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*command, str(LAUNCHER), "train", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module", params=list(MODES))
def runs(request, tmp_path_factory, tiny_path):
    """(folder, mode): the same 2-step run in one process and sharded on two."""
    mode = request.param
    if mode.startswith("zero"):
        pytest.importorskip("deepspeed")
    tmp = tmp_path_factory.mktemp(mode)
    sections = merge(SECTIONS, MODES[mode][1])
    assert apo("train", str(config_file(tmp, "one", tiny_path, **sections))).returncode == 0
    sharded_train(mode, str(config_file(tmp, "sharded", tiny_path, **sections)))
    return tmp, mode


def final_weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final_model" / "model.safetensors"))


def checkpoint(runs, step: int = 2):
    return runs[0] / "sharded" / "checkpoints" / f"step-{step:08d}"


def test_sharded_training_trains_like_one_process(runs, tiny_path):
    folder, mode = runs
    one, sharded = read_metrics(folder / "one"), read_metrics(folder / "sharded")
    assert len(one) == len(sharded) == 2
    for a, b in zip(one, sharded, strict=True):
        assert a["reward/total"] == b["reward/total"]
        assert a["loss/total"] == pytest.approx(b["loss/total"], rel=1e-4, abs=1e-6)
        assert a["optim/grad_norm"] == pytest.approx(b["optim/grad_norm"], rel=1e-4)
    # the checkpoint holds one shard of the optimizer state (FSDP: of the weights
    # too) per process
    shards = "pytorch_model_fsdp_0/*.distcp" if mode == "fsdp2" else "pytorch_model/zero_pp_*"
    assert len(list(checkpoint(runs).glob(shards))) == 2
    base = load_file(f"{tiny_path}/model.safetensors")
    w1, w2 = final_weights(folder / "one"), final_weights(folder / "sharded")
    assert set(w1) <= set(w2)  # the gathered export may also name the tied head
    moved = max((w1[k] - base[k]).abs().max().item() for k in w1)
    apart = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert moved > 1e-3
    assert apart < 0.05 * moved  # as for DDP: float sums in another order
    loaded = load_model(ModelConfig(name_or_path=str(folder / "sharded" / "final_model"))).model
    assert torch.equal(loaded.get_input_embeddings().weight, w2["model.embed_tokens.weight"])


def test_sharded_training_resumes_exactly(runs):
    folder, mode = runs
    resumed = folder / "resumed"
    shutil.copytree(folder / "sharded", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-00000002")
    shutil.rmtree(resumed / "final_model")
    config = (folder / "sharded.yaml").read_text().replace(str(folder / "sharded"), str(resumed))
    (folder / "resumed.yaml").write_text(config)
    sharded_train(mode, str(folder / "resumed.yaml"), "--resume")
    assert [r["step"] for r in read_metrics(resumed)] == [1, 2]
    straight, again = final_weights(folder / "sharded"), final_weights(resumed)
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_a_sharded_checkpoint_exports_the_weights_of_its_step(runs, tmp_path):
    exported = export_checkpoint(checkpoint(runs), tmp_path / "out")
    final = final_weights(runs[0] / "sharded")
    again = load_file(str(exported / "model.safetensors"))
    assert set(again) <= set(final)  # the gathered final_model also names the tied head
    assert all(torch.equal(final[k], again[k]) for k in again)


def test_a_checkpoint_missing_the_index_of_its_shards_is_named(runs, tmp_path):
    damaged = tmp_path / "step-00000002"
    shutil.copytree(checkpoint(runs), damaged)
    if runs[1] == "fsdp2":
        (damaged / "optimizer_0" / ".metadata").unlink()
        expected = r"optimizer_0 is incomplete \(no \.metadata"
    else:  # DeepSpeed's shards are torch.save archives, checked one by one
        shard = next((damaged / "pytorch_model").glob("zero_pp_rank_1_*"))
        shard.write_bytes(shard.read_bytes()[:1000])
        expected = r"zero_pp_rank_1_.* is damaged"
    with pytest.raises(DamagedCheckpoint, match=expected):
        verify_checkpoint(damaged, processes=2)


def test_shared_prompts_are_refused_by_sharded_engines(tmp_path, tiny_path):
    """Two forward passes per backward are untested under FSDP2 and DeepSpeed: refused
    before training, with the setting to change."""
    sections = merge(SECTIONS, {"batch": {"share_prompts": True}})
    config = config_file(tmp_path, "sharded", tiny_path, **sections)
    env = os.environ | launch_environment(CONFIGS / "fsdp2.yaml") | {"OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*command, str(LAUNCHER), "train", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode != 0
    assert "batch.share_prompts=false" in result.stderr
    assert not (tmp_path / "sharded" / "checkpoints").exists()
