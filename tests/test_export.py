"""Checkpoints as Hugging Face folders: ``apo export`` and ``apo eval --model CHECKPOINT``."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

from apo.checkpoint import list_checkpoints
from apo.cli import main
from apo.export import export_checkpoint, is_checkpoint
from apo.trainer import Trainer
from tests.trainer.conftest import ROOT, tiny_train_config
from tests.trainer.test_distributed_and_cli import apo

LORA = {"enabled": True, "r": 4, "alpha": 8}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_path):
    """Two-step runs of the tiny model, a checkpoint at each step: full and LoRA."""
    root = tmp_path_factory.mktemp("runs")
    Trainer(tiny_train_config(root / "full", tiny_path)).train()
    Trainer(tiny_train_config(root / "lora", tiny_path, lora=LORA)).train()
    return root


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a, b):
    assert sorted(a) == sorted(b)
    assert all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("run", ["full", "lora"])
@pytest.mark.slow
def test_the_last_checkpoint_exports_to_the_final_model_bit_for_bit(runs, tmp_path, run):
    last = list_checkpoints(runs / run / "checkpoints")[-1]
    exported = export_checkpoint(last, tmp_path / "model")
    assert_same_weights(weights(exported), weights(runs / run / "final_model"))
    for name in ("config.json", "tokenizer.json", "processor_config.json", "chat_template.jinja"):
        assert (exported / name).is_file()
    model = AutoModelForImageTextToText.from_pretrained(exported)
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_an_earlier_checkpoint_exports_its_own_weights(runs, tmp_path, tiny_path):
    first, _ = list_checkpoints(runs / "full" / "checkpoints")
    exported = weights(export_checkpoint(first, tmp_path / "model"))
    final = weights(runs / "full" / "final_model")
    base = load_file(f"{tiny_path}/model.safetensors")
    assert any(not torch.equal(exported[name], final[name]) for name in final)
    assert any(not torch.equal(exported[name], base[name]) for name in base)


def test_an_unmerged_lora_export_is_an_adapter_naming_its_base(runs, tmp_path, tiny_path):
    from peft import PeftModel

    last = list_checkpoints(runs / "lora" / "checkpoints")[-1]
    exported = export_checkpoint(last, tmp_path / "adapter", merge_lora=False)
    assert not (exported / "model.safetensors").exists()
    assert json.loads((exported / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ] == str(tiny_path)
    assert (exported / "tokenizer.json").is_file()
    base = AutoModelForImageTextToText.from_pretrained(tiny_path)
    merged = PeftModel.from_pretrained(base, exported).merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    assert_same_weights(weights(tmp_path / "merged"), weights(runs / "lora" / "final_model"))


@pytest.mark.slow
def test_apo_export_from_the_command_line(runs, tmp_path):
    last = list_checkpoints(runs / "full" / "checkpoints")[-1]
    result = apo("export", str(last), str(tmp_path / "model"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"exported model: {tmp_path / 'model'}" in result.stdout
    assert_same_weights(weights(tmp_path / "model"), weights(runs / "full" / "final_model"))


def test_apo_export_refuses_a_folder_that_is_not_a_checkpoint(runs, tmp_path, capsys):
    last = list_checkpoints(runs / "full" / "checkpoints")[-1]
    for source, expected in [
        (tmp_path / "missing", "is not a checkpoint: no such folder"),
        (runs / "full" / "final_model", "is not a checkpoint of apo train"),
        (runs / "full", f"it is a run folder: give one of its checkpoints, e.g. {last}"),
    ]:
        assert main(["export", str(source), str(tmp_path / "out")]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("apo export: error: ") and expected in line
    assert not (tmp_path / "out").exists()


def test_apo_export_never_writes_into_a_folder_that_holds_something(runs, tmp_path, capsys):
    last = list_checkpoints(runs / "full" / "checkpoints")[-1]
    output = tmp_path / "mine"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    assert main(["export", str(last), str(output)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in output.iterdir()] == ["notes.txt"]
    assert (output / "notes.txt").read_text() == "keep me"


def test_apo_export_names_a_damaged_file(runs, tmp_path, capsys):
    damaged = tmp_path / "step-00000002"
    shutil.copytree(list_checkpoints(runs / "full" / "checkpoints")[-1], damaged)
    weights_file = damaged / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:-100])  # cut short, as by a full disk
    assert main(["export", str(damaged), str(tmp_path / "out")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"apo export: error: {weights_file} is damaged")
    assert not (tmp_path / "out").exists()


def test_an_empty_output_folder_is_used(runs, tmp_path):
    last = list_checkpoints(runs / "full" / "checkpoints")[-1]
    (tmp_path / "empty").mkdir()
    assert (export_checkpoint(last, tmp_path / "empty") / "model.safetensors").is_file()


def test_a_hugging_face_trainer_checkpoint_is_not_mistaken_for_ours(tmp_path):
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 5}))
    assert not is_checkpoint(tmp_path)


def test_apo_eval_takes_a_checkpoint(runs, tmp_path):
    """The LoRA checkpoint answers as its exported final model does (greedy)."""
    last = list_checkpoints(runs / "lora" / "checkpoints")[-1]
    answers = {}
    for name, model in [("checkpoint", last), ("final", runs / "lora" / "final_model")]:
        output = tmp_path / name
        code = main(
            [
                "eval", "--model", str(model), "--output", str(output), "--limit", "2",
                "--max-new-tokens", "4", "--benchmark",
                f"custom={ROOT / 'examples' / 'data' / 'plain.jsonl'}",
            ]
        )  # fmt: skip
        assert code == 0
        assert json.loads((output / "summary.json").read_text())["model"] == str(model)
        rows = (output / "custom.jsonl").read_text().splitlines()
        answers[name] = [json.loads(row)["response"] for row in rows]
    assert len(answers["checkpoint"]) == 2
    assert answers["checkpoint"] == answers["final"]


EVIL_CODE = """
from pathlib import Path

Path(__file__).resolve().parents[0].joinpath("ran").touch()  # in the modules cache
Path({marker!r}).touch()

from transformers import Qwen2_5_VLConfig


class EvilConfig(Qwen2_5_VLConfig):
    pass
"""


@pytest.fixture
def foreign_checkpoint(runs, tmp_path, tiny_path):
    """A checkpoint from someone else: its trainer state asks for remote code and
    names a model folder whose config maps AutoConfig to Python that leaves a mark."""
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil_model"
    shutil.copytree(tiny_path, evil)
    config = json.loads((evil / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig"}
    (evil / "config.json").write_text(json.dumps(config))
    (evil / "evil.py").write_text(EVIL_CODE.format(marker=str(marker)))
    checkpoint = tmp_path / "step-00000002"
    shutil.copytree(list_checkpoints(runs / "full" / "checkpoints")[-1], checkpoint)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    state["config"]["model"].update(name_or_path=str(evil), trust_remote_code=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    return checkpoint, evil, marker


def test_a_checkpoint_asking_for_remote_code_runs_none(foreign_checkpoint, tmp_path):
    from transformers import AutoConfig

    checkpoint, evil, marker = foreign_checkpoint
    assert (export_checkpoint(checkpoint, tmp_path / "model") / "model.safetensors").is_file()
    assert main(["export", str(checkpoint), str(tmp_path / "by-cli")]) == 0
    code = main(
        [
            "eval", "--model", str(checkpoint), "--output", str(tmp_path / "eval"), "--limit", "1",
            "--max-new-tokens", "2", "--benchmark",
            f"custom={ROOT / 'examples' / 'data' / 'plain.jsonl'}",
        ]
    )  # fmt: skip
    assert code == 0
    assert not marker.exists()
    # The folder really is an attack: trusting it, as the person running apo may, runs it.
    AutoConfig.from_pretrained(evil, trust_remote_code=True)
    assert marker.exists()


def test_remote_code_runs_when_the_user_passes_the_flag(foreign_checkpoint, tmp_path):
    checkpoint, _, marker = foreign_checkpoint
    # The config class runs, then no model class takes it: the code ran all the same.
    with pytest.raises(ValueError, match="Unrecognized configuration class"):
        export_checkpoint(checkpoint, tmp_path / "model", trust_remote_code=True)
    assert marker.exists()
