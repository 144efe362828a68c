"""FSDP2 on 2 CPU processes (gloo), as ``accelerate launch`` with
configs/accelerate/fsdp2.yaml runs it: it trains like one process and resumes
exactly from its sharded checkpoints; DeepSpeed is refused (docs/DISTRIBUTED.md)."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from apo.checkpoint import DamagedCheckpoint, verify_checkpoint
from apo.export import export_checkpoint
from apo.models import ModelConfig, load_model
from apo.tracking import read_metrics
from apo.trainer import check_distributed_mode
from tests.trainer.conftest import ROOT
from tests.trainer.fsdp_launch import launch_environment
from tests.trainer.test_distributed_and_cli import apo, config_file

LAUNCHER = ROOT / "tests" / "trainer" / "fsdp_launch.py"
SECTIONS = {
    # several micro-batches per update: the case where the head's gradient and
    # the tied embedding's must meet before FSDP reduces them
    "rollout": {"group_size": 4, "max_new_tokens": 10, "seed_per_prompt": True},
    "batch": {"prompts_per_step": 4, "prompts_per_update": 2, "micro_batch_size": 3},
    "checkpoint": {"every": 1, "keep_last": 2},
    "logging": {"samples_per_step": 0},
    "training": {"max_steps": 2, "seed": 3},
}


def fsdp_train(*args: str) -> subprocess.CompletedProcess:
    # fp32 as the one-process run: the yaml's bf16 is left to GPUs
    settings = {k: v for k, v in launch_environment().items() if k.startswith("FSDP_")}
    env = os.environ | settings | {"ACCELERATE_USE_FSDP": "true", "OMP_NUM_THREADS": "1"}
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


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_path):
    """The same 2-step run in one process and with FSDP2 on two."""
    tmp = tmp_path_factory.mktemp("fsdp")
    assert apo("train", str(config_file(tmp, "one", tiny_path, **SECTIONS))).returncode == 0
    fsdp_train(str(config_file(tmp, "fsdp", tiny_path, **SECTIONS)))
    return tmp


def final_weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final_model" / "model.safetensors"))


def test_fsdp2_trains_like_one_process(runs, tiny_path):
    one, fsdp = read_metrics(runs / "one"), read_metrics(runs / "fsdp")
    assert len(one) == len(fsdp) == 2
    for a, b in zip(one, fsdp, strict=True):
        assert a["reward/total"] == b["reward/total"]
        assert a["loss/total"] == pytest.approx(b["loss/total"], rel=1e-4, abs=1e-6)
        assert a["optim/grad_norm"] == pytest.approx(b["optim/grad_norm"], rel=1e-4)
    # the sharded checkpoint is accelerate's: one shard file per process
    checkpoint = runs / "fsdp" / "checkpoints" / "step-00000002"
    assert len(list((checkpoint / "pytorch_model_fsdp_0").glob("*.distcp"))) == 2
    base = load_file(f"{tiny_path}/model.safetensors")
    w1, w2 = final_weights(runs / "one"), final_weights(runs / "fsdp")
    assert set(w1) <= set(w2)  # the export may also write the tied head
    moved = max((w1[k] - base[k]).abs().max().item() for k in w1)
    apart = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert moved > 1e-3
    assert apart < 0.05 * moved  # as for DDP: float sums in another order
    loaded = load_model(ModelConfig(name_or_path=str(runs / "fsdp" / "final_model"))).model
    assert torch.equal(loaded.get_input_embeddings().weight, w2["model.embed_tokens.weight"])


def test_fsdp2_resumes_exactly_from_a_sharded_checkpoint(runs):
    resumed = runs / "resumed"
    shutil.copytree(runs / "fsdp", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-00000002")
    shutil.rmtree(resumed / "final_model")
    config = (runs / "fsdp.yaml").read_text().replace(str(runs / "fsdp"), str(resumed))
    (runs / "resumed.yaml").write_text(config)
    fsdp_train(str(runs / "resumed.yaml"), "--resume")
    assert [r["step"] for r in read_metrics(resumed)] == [1, 2]
    straight, again = final_weights(runs / "fsdp"), final_weights(resumed)
    assert all(torch.equal(straight[k], again[k]) for k in straight)


@pytest.mark.parametrize(
    "mode", ["NO", "MULTI_CPU", "MULTI_GPU", "FSDP", "DEEPSPEED"], ids=str.lower
)
def test_deepspeed_is_refused_with_the_alternatives(mode):
    mode = DistributedType[mode]
    if mode == DistributedType.DEEPSPEED:
        with pytest.raises(ValueError, match=r"DeepSpeed is not supported .* Use FSDP2"):
            check_distributed_mode(mode)
    else:
        check_distributed_mode(mode)


def test_a_sharded_checkpoint_exports_the_weights_of_its_step(runs, tmp_path):
    exported = export_checkpoint(runs / "fsdp" / "checkpoints" / "step-00000002", tmp_path / "out")
    final, again = final_weights(runs / "fsdp"), load_file(str(exported / "model.safetensors"))
    assert set(again) <= set(final)  # the gathered final_model also names the tied head
    assert all(torch.equal(final[k], again[k]) for k in again)


def test_a_sharded_checkpoint_missing_its_index_is_named(runs, tmp_path):
    damaged = tmp_path / "step-00000002"
    shutil.copytree(runs / "fsdp" / "checkpoints" / "step-00000002", damaged)
    (damaged / "optimizer_0" / ".metadata").unlink()
    with pytest.raises(DamagedCheckpoint, match=r"optimizer_0 is incomplete \(no \.metadata"):
        verify_checkpoint(damaged, processes=2)
