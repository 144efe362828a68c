"""Really train the tiny model for a few steps on CPU."""

import json
import math
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from statistics import fmean

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

from apo.algorithms import shape_advantages
from apo.checkpoint import list_checkpoints, read_trainer_state
from apo.evaluation.judge import Judge
from apo.models import unwrap_model
from apo.tracking import read_eval_rows, read_metrics
from apo.trainer import StopTraining, Trainer
from tests.trainer.conftest import ROOT, VARIED, favour_end_token

SHORT_IS_RIGHT = {
    "components": [{"name": f"{VARIED}:short"}],
    "correctness": "short",
    "num_workers": 1,
}


def weights(path):
    return load_file(str(path / "model.safetensors"))


def test_training_changes_the_weights_and_writes_the_run(make_config, tiny_path):
    config = make_config()
    exported = Trainer(config).train()
    run = exported.parent

    model = AutoModelForImageTextToText.from_pretrained(exported)  # a real HF checkpoint
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    before, after = load_file(f"{tiny_path}/model.safetensors"), weights(exported)
    assert any(not torch.equal(before[name], after[name]) for name in before)

    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2]
    for key in (
        "loss/total",
        "loss/policy",
        "loss/kl",
        "kl/mean",
        "entropy/mean",
        "reward/total",
        "reward/many_es",
        "reward/format",
        "reward/accuracy_rate",
        "length/mean",
        "length/truncated_frac",
        "difficulty/mean",
        "difficulty/solved_0_of_4",
        "dads/kl_weight_pos_mean",
        "stcr/penalized_frac",
        "policy/clip_frac",
        "optim/grad_norm",
        "optim/lr",
        "time/generation",
        "time/reward",
        "time/reference",
        "time/update",
        "throughput/generated_tokens_per_s",
        "groups/uniform_reward_frac",
        "reward/many_es/timeouts",
    ):
        assert key in records[0], key
    assert all(v is None or math.isfinite(v) for r in records for v in r.values())
    assert math.isfinite(records[-1]["loss/total"])

    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [1, 1, 2, 2]
    assert {"question", "answer", "response", "reward", "correct", "advantage"} <= samples[0].keys()

    checkpoints = list_checkpoints(run / "checkpoints")
    assert [p.name for p in checkpoints] == ["step-00000001", "step-00000002"]
    state = read_trainer_state(checkpoints[-1])
    assert state["step"] == 2 and state["sampler"]["position"] == 2
    assert (checkpoints[-1] / "model.safetensors").is_file()
    assert (run / "config.yaml").is_file()


@pytest.mark.slow
def test_bfloat16_weights_train_under_bf16_mixed_precision(make_config):
    # The official View-R1 setting: the model's outputs come back in float32, the
    # output head (applied after the model) is bfloat16. Its own process:
    # accelerate keeps one mixed-precision setting per process.
    config = make_config(
        model={"dtype": "bfloat16"},
        training={"max_steps": 1, "seed": 0, "precision": "bf16"},
        checkpoint={"every": 0, "export_final_model": False},
    )
    path = Path(config.logging.output_dir).with_suffix(".yaml")
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    result = subprocess.run(
        [sys.executable, "-m", "apo", "train", str(path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = read_metrics(config.logging.output_dir)
    assert math.isfinite(record["loss/total"]) and record["optim/grad_norm"] > 0
    assert (
        yaml.safe_load((Path(config.logging.output_dir) / "config.yaml").read_text())["model"][
            "dtype"
        ]
        == "bfloat16"
    )


def test_no_gradient_is_held_between_steps(make_config):
    # generation and the log-prob passes of the next step need none
    config = make_config(training={"max_steps": 1, "seed": 0}, checkpoint={"every": 0})
    trainer = Trainer(config)
    try:
        trainer.step()
        assert all(p.grad is None for p in trainer.policy.parameters())
    finally:
        trainer.close()


@pytest.mark.slow
def test_apo_shapes_what_grpo_leaves_alone(make_config):
    """Same rollouts: GRPO has no DADS/STCR effect, APO penalises long wrong answers
    and lowers the KL weight of the positives of mixed groups."""
    results = {}
    for name in ("grpo", "apo"):
        config = make_config(
            name,
            rollout={"group_size": 8, "max_new_tokens": 12, "seed_per_prompt": True},
            rewards=SHORT_IS_RIGHT,
            algorithm={"name": name, "stcr_base": 2.0},
        )
        trainer = Trainer(config)
        favour_end_token(trainer, 3.0)
        results[name] = trainer.step()
        trainer.close()
    grpo, apo = results["grpo"], results["apo"]
    assert grpo["reward/total"] == apo["reward/total"]  # identical rollouts
    assert 0 < apo["reward/total"] < 1  # mixed groups: right and wrong answers
    assert grpo["dads/shaped_frac"] == 0 and grpo["stcr/penalized_frac"] == 0
    assert apo["dads/shaped_frac"] > 0 and apo["dads/kl_weight_pos_mean"] < 1
    assert apo["stcr/penalized_frac"] > 0 and apo["stcr/weight_penalized_mean"] > 0
    assert apo["length/incorrect_mean"] > apo["length/correct_mean"]
    assert apo["adv/abs_mean"] > grpo["adv/abs_mean"]  # wrong answers pushed harder


DYNAMIC_SAMPLING = {"group_size": 2, "dynamic_sampling": True, "dynamic_sampling_max_rounds": 3}
# Short answers of the untrained model: most are cut at the limit.
OVERLONG = {
    "rollout": {"max_new_tokens": 6},
    "rewards": {"overlong_buffer": 3},
    "algorithm": {"overlong_filter": True},
}


IMPORTANCE = {"algorithm": {"importance_sampling": "truncate", "importance_cap": 2.0}}


@pytest.mark.parametrize(
    "sections",
    [{}, {"rollout": DYNAMIC_SAMPLING}, OVERLONG, IMPORTANCE],
    ids=["plain", "dynamic-sampling", "overlong", "importance"],
)
@pytest.mark.slow
def test_resume_continues_identically(make_config, monkeypatch, sections):
    training = {"max_steps": 3, "seed": 0}
    reference = Trainer(make_config("straight", training=training, **sections)).train()

    config = make_config("interrupted", training=training, **sections)
    trainer = Trainer(config)
    original_step = Trainer.step

    def step_then_signal(self):
        metrics = original_step(self)
        self.stopping.on_signal(signal.SIGTERM, None)  # as if SIGTERM arrived in step 1
        return metrics

    monkeypatch.setattr(Trainer, "step", step_then_signal)
    with pytest.raises(StopTraining) as stop:
        trainer.train()
    assert stop.value.code == 143
    run = reference.parent.parent / "interrupted"
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-00000001"]
    monkeypatch.setattr(Trainer, "step", original_step)

    resumed = Trainer(config, resume=True)
    assert resumed.step_index == 1
    exported = resumed.train()
    expected, got = weights(reference), weights(exported)
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    straight = read_metrics(reference.parent)
    assert [r["reward/total"] for r in read_metrics(run)] == [r["reward/total"] for r in straight]


def test_resume_without_a_checkpoint_starts_fresh(make_config):
    trainer = Trainer(make_config(training={"max_steps": 1, "seed": 0}), resume=True)
    assert trainer.step_index == 0
    trainer.close()


def test_resume_refuses_a_checkpoint_of_another_model(make_config, tmp_path):
    Trainer(make_config("a", training={"max_steps": 1, "seed": 0})).train()
    checkpoint = list_checkpoints(tmp_path / "a" / "checkpoints")[-1]
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    state["config"]["model"]["name_or_path"] = "someone/else"
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"another model: model\.name_or_path: 'someone/else' ->"):
        Trainer(make_config("b", training={"max_steps": 1, "seed": 0}), resume=str(checkpoint))
    with pytest.raises(ValueError, match=r"lora\.enabled: False -> True"):
        Trainer(make_config("c", lora={"enabled": True}), resume=str(checkpoint))


def test_resume_names_the_settings_that_changed(make_config, tmp_path, caplog):
    Trainer(make_config("a", training={"max_steps": 1, "seed": 0})).train()
    checkpoint = list_checkpoints(tmp_path / "a" / "checkpoints")[-1]
    changed = make_config("b", training={"max_steps": 2, "seed": 0}, optim={"lr": 5e-4})
    with caplog.at_level("WARNING", logger="apo"):
        Trainer(changed, resume=str(checkpoint)).close()
    [warning] = [r.getMessage() for r in caplog.records if "changed settings" in r.getMessage()]
    assert "optim.lr: 0.001 -> 0.0005" in warning
    assert "max_steps" not in warning and "output_dir" not in warning  # expected to change


def test_lora_checkpoints_hold_only_the_adapter_and_export_merged(make_config):
    config = make_config(
        lora={"enabled": True, "r": 4, "alpha": 8}, training={"max_steps": 1, "seed": 0}
    )
    exported = Trainer(config).train()
    checkpoint = list_checkpoints(exported.parent / "checkpoints")[-1]
    assert (checkpoint / "adapter" / "adapter_model.safetensors").is_file()
    assert not (checkpoint / "model.safetensors").exists()
    model = AutoModelForImageTextToText.from_pretrained(exported)  # merged: a plain model
    assert not any("lora" in name for name, _ in model.named_parameters())
    resumed = Trainer(config.model_copy(update={}), resume=True)
    assert resumed.step_index == 1
    resumed.close()


def test_filtering_uniform_groups(make_config):
    config = make_config(
        rewards={"components": [{"name": "format"}], "correctness": "format", "num_workers": 1},
        algorithm={"filter_uniform_groups": True},
        training={"max_steps": 1, "seed": 0},
    )
    trainer = Trainer(config)
    metrics = trainer.step()  # the untrained model never formats: every group is uniform
    trainer.close()
    assert metrics["groups/uniform_reward_frac"] == 1.0
    assert metrics["groups/filtered_frac"] == 1.0
    assert metrics["loss/total"] == 0.0


def test_off_policy_updates_use_old_log_probs(make_config):
    config = make_config(
        batch={"prompts_per_step": 2, "prompts_per_update": 1, "micro_batch_size": 2},
        algorithm={"ppo_epochs": 2},
        training={"max_steps": 1, "seed": 0},
    )
    trainer = Trainer(config)
    metrics = trainer.step()
    trainer.close()
    # 2 updates x 2 epochs: the policy moved between updates, so ratios left 1
    assert metrics["policy/ratio_max"] > 1.0
    assert math.isfinite(metrics["loss/total"])


@pytest.mark.parametrize("updates_per_step", [1, 2])
@pytest.mark.slow
def test_logprob_batches_cut_across_micro_batches(make_config, updates_per_step):
    """Reference (and old) log-probs computed 3 sequences at a time, across
    micro-batches of 2, train like the same run with passes of 2."""
    batch = {"prompts_per_step": 2, "prompts_per_update": 2 // updates_per_step}
    weights = []
    for name, size in (("same", 2), ("across", 3)):
        config = make_config(
            name,
            algorithm={"beta": 0.05},
            batch=batch | {"micro_batch_size": 2, "logprob_batch_size": size},
        )
        trainer = Trainer(config)
        trainer.train()
        weights.append({k: v.clone() for k, v in unwrap_model(trainer.policy).state_dict().items()})
    moved = max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0])
    assert moved < 1e-5  # float rounding of another batch shape


def _weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in unwrap_model(trainer.policy).state_dict().items()}


def _runs_with_batches(make_config, batches: dict[str, dict]) -> dict[str, tuple]:
    """A short run per ``batch`` section, on the same seed with responses of several
    lengths: its start weights, final weights and metrics."""
    runs = {}
    for name, batch in batches.items():
        config = make_config(
            name,
            algorithm={"beta": 0.05},
            rollout={"group_size": 4, "max_new_tokens": 24},
            batch={"micro_batch_size": 4, **batch},
            checkpoint={"every": 0},
        )
        trainer = Trainer(config)
        start = _weights(trainer)
        favour_end_token(trainer, 2.5)  # lengths vary, so sorting and padding matter
        trainer.train()
        runs[name] = (start, _weights(trainer), read_metrics(config.logging.output_dir))
    return runs


@pytest.mark.slow
def test_token_budget_micro_batches_train_like_fixed_ones(make_config, monkeypatch):
    """Rows sorted by length and cut by a token budget: other micro-batches, the same
    gradient (the loss denominators count the whole update either way)."""
    from apo.training.update import PolicyUpdate

    shapes = {}
    accumulate = PolicyUpdate.accumulate_gradients

    def record(self, micro_batches, denominator):
        shapes.setdefault(Path(self.config.logging.output_dir).name, []).append(
            [tuple(m.batch.inputs["input_ids"].shape) for m in micro_batches]
        )
        return accumulate(self, micro_batches, denominator)

    monkeypatch.setattr(PolicyUpdate, "accumulate_gradients", record)
    runs = _runs_with_batches(
        make_config, {"rows": {}, "tokens": {"max_tokens_per_micro_batch": 200}}
    )
    rows, tokens = shapes["rows"], shapes["tokens"]
    assert rows != tokens  # the budget cut the update otherwise
    assert all(b * (length) <= 200 or b == 1 for update in tokens for b, length in update)
    (_, first, one), (_, second, two) = runs.values()
    for a, b in zip(one, two, strict=True):
        assert a["reward/total"] == b["reward/total"]  # the same responses
        assert a["loss/total"] == pytest.approx(b["loss/total"], rel=1e-5, abs=1e-7)
    moved = max((first[k] - second[k]).abs().max().item() for k in first)
    assert moved < 1e-5  # float rounding of other batch shapes


@pytest.mark.slow
def test_shared_prompts_train_like_full_rows(make_config, monkeypatch):
    """batch.share_prompts: each prompt runs once for its group in the reference pass
    and the update; the same responses, losses and weights up to float rounding."""
    from apo.models import logprobs

    shared_calls = []
    shared = logprobs.shared_prompt_hidden

    def counted(model, batch):
        shared_calls.append(torch.is_grad_enabled())
        return shared(model, batch)

    monkeypatch.setattr(logprobs, "shared_prompt_hidden", counted)
    runs = _runs_with_batches(make_config, {"full": {}, "shared": {"share_prompts": True}})
    # the reference pass (no grad) and the update (grad) both shared their prompts
    assert set(shared_calls) == {False, True}
    (start, full, one), (_, shared_weights, two) = runs.values()
    for a, b in zip(one, two, strict=True):
        assert a["reward/total"] == b["reward/total"]  # the same responses
        assert a["loss/total"] == pytest.approx(b["loss/total"], rel=1e-5, abs=1e-7)
        assert a["optim/grad_norm"] == pytest.approx(b["optim/grad_norm"], rel=1e-4)
    apart = max((full[k] - shared_weights[k]).abs().max().item() for k in full)
    moved = max((full[k] - start[k]).abs().max().item() for k in start)
    # float rounding of another computation order, which Adam's normalisation enlarges
    assert apart < 0.02 * moved


@pytest.mark.slow
def test_periodic_evaluation(make_config):
    data = ROOT / "examples" / "data"
    datasets = {
        "viewr1": {"data": {"path": str(data / "viewr1.jsonl"), "max_prompt_length": 1024}},
        "plain": {
            "data": {"path": str(data / "plain.jsonl"), "max_prompt_length": 1024},
            "temperature": 1.0,
            "samples_per_question": 3,
        },
    }
    config = make_config(
        eval={"every": 1, "at_start": True, "datasets": datasets},
        training={"max_steps": 2, "seed": 0},
    )
    exported = Trainer(config).train()
    records = read_metrics(exported.parent)
    evals = [r for r in records if "eval/viewr1/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 1, 2]
    for record in evals:
        assert 0.0 <= record["eval/viewr1/accuracy"] <= 1.0
        assert {
            "eval/plain/accuracy",
            "eval/plain/format_rate",
            "eval/plain/length_mean",
        } <= record.keys()
    # evals.jsonl: the answers each figure was computed from, every question each time
    for record in evals:
        for name, samples in (("viewr1", 1), ("plain", 3)):
            rows = [r for r in read_eval_rows(exported.parent, record["step"]) if r["set"] == name]
            questions = (data / f"{name}.jsonl").read_text().splitlines()
            answers = Counter((r["id"], r["sample"]) for r in rows)
            assert len({id for id, _ in answers}) == len(questions)
            assert set(answers.values()) == {1} and {s for _, s in answers} == set(range(samples))
            assert len(rows) == len(questions) * samples
            accuracy = sum(r["correct"] for r in rows) / len(rows)  # equal samples per question
            assert record[f"eval/{name}/accuracy"] == pytest.approx(accuracy)
            assert record[f"eval/{name}/length_mean"] == pytest.approx(
                sum(r["length"] for r in rows) / len(rows)
            )


@pytest.mark.slow
def test_evaluating_never_changes_the_training_run(make_config):
    # Sampled evaluations draw from their own seed and put the training random state
    # back: a run evaluated every step trains exactly like one never evaluated.
    data = ROOT / "examples" / "data" / "plain.jsonl"
    sampled = {"data": {"path": str(data), "max_prompt_length": 1024}, "temperature": 1.0}
    runs = []
    for name, evaluation in (
        ("evaluated", {"every": 1, "at_start": True, "datasets": {"plain": sampled}}),
        ("not-evaluated", {"every": 0, "at_start": False, "datasets": {}}),
    ):
        exported = Trainer(make_config(name, eval=evaluation, checkpoint={"every": 0})).train()
        runs.append(load_file(str(exported / "model.safetensors")))
    assert all(torch.equal(runs[0][key], runs[1][key]) for key in runs[0])


@pytest.mark.slow
def test_periodic_evaluation_on_a_benchmark(make_config, tmp_path, monkeypatch):
    """A benchmark's files as an evaluation set: its questions, judged by its rule."""
    from tests.evaluation import fixtures

    judged = []
    original = Judge.__call__

    def recording(self, name, items):
        verdicts = original(self, name, items)
        judged.append((name, [q.answer for q, _ in items], fmean(v["correct"] for v in verdicts)))
        return verdicts

    monkeypatch.setattr(Judge, "__call__", recording)
    datasets = {"star": {"benchmark": "mmstar", "data": {"path": str(fixtures.mmstar(tmp_path))}}}
    config = make_config(eval={"every": 0, "at_start": True, "datasets": datasets})
    exported = Trainer(config).train()
    [start, end] = [r for r in read_metrics(exported.parent) if "eval/star/accuracy" in r]
    assert judged[0][:2] == ("mmstar", ["A", "A"])  # two questions, greedy: one answer each
    assert start["eval/star/accuracy"] == judged[0][2]
    assert 0.0 <= start["eval/star/format_rate"] <= 1.0 and end["step"] == 2


def test_an_unknown_benchmark_is_a_config_error(make_config):
    with pytest.raises(ValueError, match="unknown benchmark 'mmbench'"):
        make_config(eval={"datasets": {"x": {"benchmark": "mmbench", "data": {"path": "."}}}})


def _poison_gradients(trainer):
    """Make every gradient of one parameter NaN (generation is unaffected)."""
    from apo.models import unwrap_model

    parameter = unwrap_model(trainer.policy).get_output_embeddings().weight
    return parameter.register_hook(lambda grad: grad * float("nan"))


def test_a_nonfinite_gradient_skips_the_update(make_config):
    trainer = Trainer(make_config(training={"max_steps": 2, "seed": 0}))
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    handle = _poison_gradients(trainer)
    metrics = trainer.step()
    handle.remove()
    assert metrics["optim/skipped_updates"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in trainer.policy.state_dict().items())
    assert trainer.step()["optim/skipped_updates"] == 0.0  # training goes on
    trainer.close()


def test_too_many_nonfinite_updates_stop_with_a_checkpoint(make_config, tmp_path):
    from apo.trainer import NonFiniteTraining

    config = make_config(
        training={"max_steps": 5, "seed": 0, "max_nonfinite_updates": 2}, checkpoint={"every": 0}
    )
    trainer = Trainer(config)
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    _poison_gradients(trainer)
    with pytest.raises(NonFiniteTraining, match="2 updates in a row had a NaN/inf gradient"):
        trainer.train()
    [checkpoint] = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert read_trainer_state(checkpoint)["step"] == 1
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert all(torch.equal(before[k], saved[k]) for k in saved)


def test_a_reward_failing_on_every_response_stops_the_run(make_config, tmp_path):
    from apo.trainer import RewardFailure

    config = make_config(
        rewards={
            "components": [{"name": "format"}, {"name": f"{VARIED}:broken"}],
            "correctness": "format",
            "num_workers": 1,
            "max_failing_steps": 2,
        },
        training={"max_steps": 5, "seed": 0},
        checkpoint={"every": 0},
    )
    with pytest.raises(RewardFailure, match="reward 'broken' failed on every response for 2 steps"):
        Trainer(config).train()
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1]  # the second step stopped before its update
    assert records[0]["reward/broken/errors"] == 8.0  # 2 prompts x 4 responses, all counted
    assert read_trainer_state(list_checkpoints(tmp_path / "run" / "checkpoints")[-1])["step"] == 1


@pytest.mark.slow
def test_dynamic_sampling_trains_only_on_groups_with_varied_rewards(make_config, monkeypatch):
    """Groups of 2 on the untrained model: many have equal rewards. Each step keeps
    generating until it has 2 varied groups (or 3 rounds); advantage shaping (STCR,
    DADS) sees only the selected groups, and a short step's fill-ins are not trained."""
    import apo.trainer

    seen = []

    def recording(total, *args, **kwargs):
        seen.append(total.reshape(-1, 2).clone())
        return shape_advantages(total, *args, **kwargs)

    monkeypatch.setattr(apo.trainer, "shape_advantages", recording)
    config = make_config(rollout=DYNAMIC_SAMPLING, training={"max_steps": 4, "seed": 1})
    Trainer(config).train()
    records = read_metrics(config.logging.output_dir)
    assert len(seen) == len(records) == 4
    for groups, record in zip(seen, records, strict=True):
        varied = int((groups[:, 0] != groups[:, 1]).sum())
        assert groups.shape == (2, 2)  # prompts_per_step groups, whatever the rounds
        assert record["dynamic_sampling/missing_groups"] == 2 - varied
        assert record["groups/filtered_frac"] == (2 - varied) / 2  # fill-ins not trained
        assert 1 <= record["dynamic_sampling/rounds"] <= 3
        if record["dynamic_sampling/rounds"] < 3:
            assert varied == 2  # it stopped because it had them
    assert any(r["dynamic_sampling/rounds"] > 1 for r in records)  # rounds did happen
    assert any(r["dynamic_sampling/dropped_frac"] > 0 for r in records)


def test_overlong_punishment_and_filter_in_training(make_config):
    """The soft punishment is a reward component in the total; the filter leaves
    exactly the truncated answers out of the update."""
    trainer = Trainer(make_config(training={"max_steps": 2, "seed": 0}, **OVERLONG))
    favour_end_token(trainer, 4.0)  # some answers end before the limit
    records = [trainer.step() for _ in range(2)]
    trainer.close()
    for record in records:
        assert 0 < record["length/truncated_frac"] < 1
        assert record["reward/overlong"] < 0
        assert record["groups/filtered_frac"] == record["length/truncated_frac"]
        components = record["reward/many_es"] + 0.5 * record["reward/format"]
        assert record["reward/total"] == pytest.approx(components + record["reward/overlong"])


@pytest.fixture
def no_suppressed_tokens(monkeypatch):
    """Sampling as the trainer computes log-probs: the engines keep a VLM's image
    placeholder tokens from being sampled, which moves the sampling distribution
    away from the trainer's by log(1 - p), p their probability (about 0.006 nats
    per token on the untrained tiny model: a true mismatch, which monitor shows)."""
    for module in ("native_engine", "transformers_engine"):
        monkeypatch.setattr(f"apo.rollout.{module}.placeholder_token_ids", lambda model: [])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["native", "transformers"])
def test_the_same_fp32_model_samples_and_trains_without_mismatch(
    make_config, engine, no_suppressed_tokens
):
    """The engine samples with the policy itself: its recorded log-probs are the
    trainer's, up to float rounding (incremental decoding with a cache)."""
    config = make_config(rollout={"engine": engine}, algorithm={"importance_sampling": "monitor"})
    trainer = Trainer(config)
    metrics = trainer.step()
    trainer.close()
    assert metrics["importance/logp_abs_diff"] < 1e-4
    assert metrics["importance/kl"] < 1e-8 and metrics["importance/over_cap_frac"] == 0


@pytest.mark.slow
def test_a_mismatched_sampler_is_corrected(make_config, monkeypatch, no_suppressed_tokens):
    """A sampler whose log-probs are one nat below the trainer's: rho = e > C = 2 on
    every token. Truncated weights double the policy gradient (the KL term has no
    gradient at the first step); the mask leaves every response out."""
    import dataclasses

    steps = {}
    for mode in ("monitor", "truncate", "mask"):
        trainer = Trainer(make_config(mode, algorithm={"importance_sampling": mode}))
        generate = trainer.engine.generate

        def shifted(*args, generate=generate, **kwargs):
            return [
                dataclasses.replace(r, sampling_logps=[x - 1.0 for x in r.sampling_logps])
                for r in generate(*args, **kwargs)
            ]

        monkeypatch.setattr(trainer.engine, "generate", shifted)
        steps[mode] = trainer.step()
        trainer.close()
    monitor, truncate, mask = steps["monitor"], steps["truncate"], steps["mask"]
    assert monitor["importance/logp_abs_diff"] == pytest.approx(1.0, abs=1e-4)
    assert monitor["importance/over_cap_frac"] == 1.0
    assert monitor["optim/grad_norm"] > 0
    assert truncate["optim/grad_norm"] == pytest.approx(2 * monitor["optim/grad_norm"], rel=1e-4)
    assert mask["importance/masked_frac"] == 1.0 and mask["optim/grad_norm"] == 0


def test_an_engine_without_sampling_log_probs_is_named(make_config, monkeypatch):
    import dataclasses

    trainer = Trainer(make_config(algorithm={"importance_sampling": "truncate"}))
    generate = trainer.engine.generate
    monkeypatch.setattr(
        trainer.engine,
        "generate",
        lambda *a, **k: [dataclasses.replace(r, sampling_logps=None) for r in generate(*a, **k)],
    )
    with pytest.raises(ValueError, match="records no sampling log-probs"):
        trainer.step()
    trainer.close()
