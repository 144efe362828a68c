"""apo.integrations.trl: APOTrainer is TRL's GRPOTrainer plus exactly apo.algorithms' shaping.

All on CPU with the tiny model and transformers generation (vLLM and DeepSpeed
are TRL's own paths, not run here).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import subprocess
import sys

import pytest

trl = pytest.importorskip("trl")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoProcessor, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from apo.algorithms import AlgorithmConfig, apo_objective, shape_advantages  # noqa: E402
from apo.integrations.trl import (  # noqa: E402
    APO_FIELDS,
    SET_BY_TRL,
    TESTED_TRL,
    APOConfig,
    APOTrainer,
)
from tests.helpers import image  # noqa: E402
from tests.trainer.conftest import ROOT  # noqa: E402

GROUP = 4


@pytest.fixture(scope="module")
def model_path(tiny_path, tmp_path_factory):
    """The tiny model, stopping at many tokens so completion lengths vary (STCR has work)."""
    path = tmp_path_factory.mktemp("tiny") / "model"
    shutil.copytree(tiny_path, path)
    config_file = path / "generation_config.json"
    config = json.loads(config_file.read_text())
    config["eos_token_id"] = [config["eos_token_id"], *range(60, 160)]
    config_file.write_text(json.dumps(config))
    return str(path)


def dataset(prompts: int = 4) -> Dataset:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    return Dataset.from_list(
        [
            {
                "prompt": [
                    {
                        "role": "user",
                        "content": [{"type": "image"}, {"type": "text", "text": f"Count {k}."}],
                    }
                ],
                "image": image(56, 56, colours[k % len(colours)]),
            }
            for k in range(prompts)
        ]
    )


def lucky(completion_ids, **kwargs):
    """The correctness reward of these tests: 1 for an even token-id sum (about half)."""
    return [float(sum(ids) % 2 == 0) for ids in completion_ids]


def short(completion_ids, **kwargs):
    """A second reward (format-like): 0.5 for a completion under 8 tokens."""
    return [0.5 * (len(ids) < 8) for ids in completion_ids]


def settings(tmp_path, **overrides):
    return {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 2,
        "num_generations": GROUP,
        "max_completion_length": 12,
        "temperature": 1.0,
        "beta": 0.04,
        "loss_type": "grpo",
        "use_bias_correction_kl": False,
        "learning_rate": 1e-2,  # large, so two steps move the weights visibly
        "max_steps": 2,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "bf16": False,
        "use_cpu": True,
        "seed": 0,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    } | overrides


class Recorder(TrainerCallback):
    """The gradients just before each optimizer step."""

    def __init__(self):
        self.gradients: list[dict[str, torch.Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.gradients.append(
            {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        )


def train(trainer_class, args, model_path, reward_funcs=(lucky, short), trainer_kwargs=None):
    recorder = Recorder()
    trainer = trainer_class(
        model=model_path,
        reward_funcs=list(reward_funcs),
        args=args,
        train_dataset=dataset(),
        processing_class=AutoProcessor.from_pretrained(model_path, padding_side="left"),
        callbacks=[recorder],
        **(trainer_kwargs or {}),
    )
    trainer.train()
    return trainer, recorder


def losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_without_dads_and_stcr_apo_trainer_is_grpo_trainer(tmp_path, model_path):
    """Same seed, DADS and STCR off, TRL's std epsilon: same losses, gradients, weights.

    Equal up to float32 rounding: apo takes the group std with torch.std, TRL with
    its nanstd. Plain SGD, because Adam's first steps move every weight by about
    lr whatever its gradient, so they would turn rounding noise into lr-sized steps.
    """
    common = settings(tmp_path, optim="sgd")
    grpo, grpo_grads = train(GRPOTrainer, GRPOConfig(**common), model_path)
    apo_args = APOConfig(**common, dads=False, stcr=False, advantage_eps=1e-4)
    apo, apo_grads = train(APOTrainer, apo_args, model_path)

    assert losses(apo) == pytest.approx(losses(grpo), rel=1e-5, abs=1e-7)
    assert len(apo_grads.gradients) == len(grpo_grads.gradients) == 2
    for ours, theirs in zip(apo_grads.gradients, grpo_grads.gradients, strict=True):
        assert ours.keys() == theirs.keys()
        for name in ours:
            torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-6)
    theirs = dict(grpo.model.named_parameters())
    for name, parameter in apo.model.named_parameters():
        torch.testing.assert_close(parameter, theirs[name], rtol=1e-4, atol=1e-6)


class Capturing(APOTrainer):
    """Records each loss with the tensors it was computed from."""

    captured: list

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        result = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        self._logp = result[0]
        return result

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        self.captured.append(
            {
                "loss": loss.detach() * self.current_gradient_accumulation_steps,
                "logp": self._logp,  # the log-probs this loss was computed from
                "inputs": dict(inputs),
                "shaping": dict(self.last_shaping),
            }
        )
        return loss


def test_with_dads_and_stcr_the_trainer_uses_apo_algorithms(tmp_path, model_path):
    args = APOConfig(**settings(tmp_path), correctness_reward="lucky", stcr_base=1.2)
    Capturing.captured = []
    trainer, _ = train(Capturing, args, model_path)
    assert len(Capturing.captured) == 4  # 2 steps x 2 accumulated micro-batches

    config = args.algorithm_config()
    shaping = Capturing.captured[0]["shaping"]
    expected = shape_advantages(
        shaping["rewards"], shaping["correct"], shaping["lengths"], GROUP, config
    )
    torch.testing.assert_close(shaping["advantages"], expected.advantages)
    torch.testing.assert_close(shaping["kl_weights"], expected.kl_weights)
    # The rollout exercised both: some KL weight below 1, some STCR weight above 0.
    assert bool((expected.kl_weights < 1).any()) and bool((expected.stcr_weights > 0).any())
    assert shaping["correct"].any() and not shaping["correct"].all()
    # The rewards are TRL's: the sum of both reward functions.
    assert set(shaping["rewards"].tolist()) <= {0.0, 0.5, 1.0, 1.5}

    for record in Capturing.captured:
        inputs = record["inputs"]
        loss, _ = apo_objective(
            record["logp"],
            record["logp"],  # one update per rollout: old = current
            inputs["ref_per_token_logps"],
            inputs["completion_mask"],
            inputs["advantages"],
            inputs["apo_kl_weights"],
            config,
        )
        torch.testing.assert_close(record["loss"], loss, rtol=1e-5, atol=1e-7)
    logged = [e for e in trainer.state.log_history if "apo/dads/shaped_frac" in e]
    assert logged and logged[0]["apo/dads/shaped_frac"] > 0


@pytest.fixture(scope="module")
def text_model_path(tiny_path, tmp_path_factory):
    """A text-only Qwen2 on the tiny tokenizer, stopping at many tokens."""
    from transformers import AutoTokenizer

    from tests.helpers import tiny_text_model

    path = tmp_path_factory.mktemp("text") / "model"
    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    model = tiny_text_model(tokenizer)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *range(60, 160)]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_a_text_only_model_trains_with_the_same_shaping(tmp_path, text_model_path):
    from transformers import AutoTokenizer

    args = APOConfig(**settings(tmp_path, max_steps=1), correctness_reward="lucky", stcr_base=1.2)
    prompts = [[{"role": "user", "content": f"Count to {k}."}] for k in range(4)]
    trainer = APOTrainer(
        model=text_model_path,
        reward_funcs=[lucky, short],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
        processing_class=AutoTokenizer.from_pretrained(text_model_path, padding_side="left"),
    )
    trainer.train()
    shaping = trainer.last_shaping
    expected = shape_advantages(
        shaping["rewards"], shaping["correct"], shaping["lengths"], GROUP, args.algorithm_config()
    )
    torch.testing.assert_close(shaping["advantages"], expected.advantages)
    torch.testing.assert_close(shaping["kl_weights"], expected.kl_weights)
    assert bool((expected.kl_weights < 1).any())


def test_a_wrong_correctness_reward_fails_before_training(tmp_path, model_path):
    args = APOConfig(**settings(tmp_path), correctness_reward="accuracy")
    with pytest.raises(ValueError, match=r"correctness_reward='accuracy'.*\['lucky', 'short'\]"):
        train(APOTrainer, args, model_path)


def test_dads_or_stcr_need_a_correctness_reward(tmp_path):
    with pytest.raises(ValueError, match="correctness_reward is not set"):
        APOConfig(**settings(tmp_path))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("loss_type", "sapo"),
        ("loss_type", "cispo"),
        ("scale_rewards", "batch"),
        ("multi_objective_aggregation", "normalize_then_sum"),
    ],
)
def test_an_incompatible_trl_option_fails_at_construction(tmp_path, option, value):
    with pytest.raises(ValueError, match=f"{option}={value!r} cannot be combined with APO"):
        APOConfig(**settings(tmp_path, **{option: value}), correctness_reward="lucky")


def test_dads_without_a_kl_term_fails(tmp_path):
    with pytest.raises(ValueError, match="dads=True needs beta > 0"):
        APOConfig(**settings(tmp_path, beta=0.0), correctness_reward="lucky")


def test_apo_trainer_needs_an_apo_config(tmp_path, model_path):
    with pytest.raises(TypeError, match="APOConfig"):
        APOTrainer(model=model_path, reward_funcs=[lucky], args=GRPOConfig(**settings(tmp_path)))


def test_apo_config_has_the_official_defaults(tmp_path):
    args = APOConfig(output_dir=str(tmp_path), correctness_reward="accuracy", use_cpu=True)
    assert (args.beta, args.loss_type, args.use_bias_correction_kl) == (1e-3, "grpo", False)
    assert (args.advantage_eps, args.stcr_base, args.dads_schedule) == (1e-9, 1.00001, "saturating")
    assert args.dads and args.stcr and not args.stcr_negatives_only
    config = args.algorithm_config()
    assert (config.advantage, config.aggregation, config.eps_low) == (
        "grpo",
        "seq-mean-token-mean",
        0.2,
    )


def test_the_apo_fields_are_algorithm_config_fields_with_their_default_and_help():
    fields = {f.name: f for f in dataclasses.fields(APOConfig)}
    assert {"dads", "stcr", "stcr_base", "dads_schedule"} <= set(APO_FIELDS)
    for name in APO_FIELDS:
        info = AlgorithmConfig.model_fields[name]
        assert (fields[name].default, fields[name].metadata["help"]) == (
            info.default,
            info.description,
        ), name


def test_every_apo_field_shapes_the_advantages_or_the_kl_weights():
    """A knob that only the loss reads would be an APOConfig field that does nothing
    (TRL computes the loss): the fields come from the shaping's own list."""
    source = inspect.getsource(shape_advantages)
    for name in APO_FIELDS:
        assert f"config.{name}" in source, f"{name}: not read by shape_advantages"
    assert not SET_BY_TRL - set(AlgorithmConfig.model_fields)  # no stale name
    assert set(APO_FIELDS) == {
        "dads", "stcr", "advantage_eps", "dads_schedule", "stcr_base", "stcr_negatives_only"
    }  # fmt: skip


def test_hf_argument_parser_parses_the_apo_fields_with_their_help(tmp_path):
    from transformers import HfArgumentParser

    parser = HfArgumentParser(APOConfig)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--use_cpu", "true", "--correctness_reward", "lucky",
         "--stcr_base", "1.2", "--dads_schedule", "exp_decay", "--no_stcr"]
    )  # fmt: skip
    assert isinstance(args, APOConfig)
    assert (args.stcr_base, args.dads_schedule) == (1.2, "exp_decay")
    assert not args.stcr and args.dads  # --no_stcr; dads keeps its default
    assert args.algorithm_config().stcr_base == 1.2
    # argparse wraps the help (at spaces and hyphens): compare without whitespace
    help_text = "".join(parser.format_help().split())
    for name in APO_FIELDS:
        description = AlgorithmConfig.model_fields[name].description
        assert f"--{name}" in help_text and "".join(description.split()) in help_text, name


def test_the_installed_trl_is_a_tested_version():
    from packaging.version import Version

    assert TESTED_TRL[0] <= Version(trl.__version__) < TESTED_TRL[1], (
        f"trl {trl.__version__} is not a version APOTrainer is tested with; check the "
        "override points below against its GRPOTrainer, then widen TESTED_TRL and apo-rl[trl]"
    )


def test_trl_still_has_the_override_points():
    """What APOTrainer relies on in GRPOTrainer's source; a new TRL that moves one fails here."""
    score = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "self._calculate_rewards(inputs, prompts, completions, completion_ids_list)" in score
    assert "= self._generate(prompts)" in score
    assert '"advantages": advantages,' in score
    generate = inspect.getsource(GRPOTrainer._generate)
    assert "return prompt_ids, completion_ids, tool_mask," in generate
    assert "return self._compute_loss(model, inputs)" in inspect.getsource(GRPOTrainer.compute_loss)
    loss = inspect.getsource(GRPOTrainer._compute_loss)
    assert "self.beta * per_token_kl" in loss
    assert 'advantages = inputs["advantages"]' in loss
    rewards = inspect.getsource(GRPOTrainer._calculate_rewards)
    assert "rewards_per_func = gather(rewards_per_func)" in rewards


def test_a_trl_whose_loss_no_longer_takes_beta_times_the_kl_stops_training(monkeypatch, tmp_path):
    """If GRPOTrainer's loss stops computing `self.beta * per_token_kl`, APOTrainer must not
    silently train without DADS."""
    trainer = APOTrainer.__new__(APOTrainer)  # only what _compute_loss reads
    trainer.args = APOConfig(**settings(tmp_path), correctness_reward="lucky")
    trainer.beta = 0.04
    monkeypatch.setattr(GRPOTrainer, "_compute_loss", lambda self, model, inputs: torch.tensor(0.0))
    with pytest.raises(RuntimeError, match=r"no longer computes `self.beta \* per_token_kl`"):
        trainer._compute_loss(None, {"apo_kl_weights": torch.ones(2)})
    assert trainer.beta == 0.04 and type(trainer.beta) is float


def run_script(path: str, *args: str) -> subprocess.CompletedProcess:
    """A script of the repository run as a user would, from its root."""
    return subprocess.run(
        [sys.executable, str(ROOT / path), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_the_example_runs_on_cpu_with_the_tiny_model(tmp_path):
    result = run_script(
        "examples/trl_apo.py", "--tiny", "--max-steps", "1", "--output-dir", str(tmp_path / "out")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "apo/dads/shaped_frac" in result.stdout


@pytest.mark.slow
def test_the_step_benchmark_runs_apo_inside_trl(tmp_path):
    out = tmp_path / "step.json"
    result = run_script(
        "benchmarks/step.py", "--prompts", "2", "--group", "2", "--max-new-tokens", "4",
        "--micro-batch", "2", "--steps", "1", "--warmup", "0",
        "--frameworks", "trl", "apo-trl", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "apo-trl / trl" in result.stdout and "APO's own time" in result.stdout
    figures = json.loads(out.read_text())["figures"]
    assert figures["apo-trl"]["phases"]["apo_overhead"] > 0


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_compute_what_one_process_computes(tmp_path, text_model_path):
    """gloo on CPU, same global batch (deterministic completions): same shaping and gradients."""
    script = str(ROOT / "tests" / "integrations" / "trl_processes.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "TRL_EXPERIMENTAL_SILENCE": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    commands = {
        1: [sys.executable, script],
        2: [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            script,
        ],
    }
    results = {}
    for processes, command in commands.items():
        out = tmp_path / f"{processes}.pt"
        run = subprocess.run(
            [*command, text_model_path, str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env=env,
        )
        assert run.returncode == 0, f"{processes} process(es):\n{run.stderr[-3000:]}"
        results[processes] = torch.load(out)
    one, two = results[1], results[2]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert len(one["shaping"]) == 8 and one["shaping"] == two["shaping"]
    shaped = [v for v in one["shaping"].values()]
    assert any(v["kl_weights"] < 1 for v in shaped)  # DADS acted
    assert one["gradients"].keys() == two["gradients"].keys()
    for name, gradient in one["gradients"].items():
        torch.testing.assert_close(two["gradients"][name], gradient, rtol=1e-4, atol=1e-6)
