from pathlib import Path

import pytest
import torch
import yaml

from apo.algorithms import apo_objective, shape_advantages
from apo.config import (
    AlgorithmConfig,
    ConfigError,
    TrainConfig,
    config_to_yaml,
    load_config,
    merge,
    parse_overrides,
)


def test_overrides_become_a_nested_mapping_of_yaml_values():
    tree = parse_overrides(
        [
            "algorithm.beta=0.01",
            "rollout.stop_strings=[a, b]",
            "lora.enabled=true",
            "model.attn_implementation=",
        ]
    )
    assert tree == {
        "algorithm": {"beta": 0.01},
        "rollout": {"stop_strings": ["a", "b"]},
        "lora": {"enabled": True},
        "model": {"attn_implementation": None},
    }


@pytest.mark.parametrize("item", ["beta", "=1", "a.b=[unclosed"])
def test_malformed_overrides_are_rejected(item):
    with pytest.raises(ConfigError):
        parse_overrides([item])


def test_merge_keeps_sibling_keys():
    assert merge({"a": {"x": 1, "y": 2}, "b": 3}, {"a": {"y": 5}}) == {
        "a": {"x": 1, "y": 5},
        "b": 3,
    }


def test_algorithm_name_sets_the_flags_unless_given():
    assert AlgorithmConfig(name="apo").dads and AlgorithmConfig(name="apo").stcr
    assert not AlgorithmConfig(name="grpo").dads
    ablation = AlgorithmConfig(name="grpo", dads=True)
    assert ablation.dads and not ablation.stcr


def test_unknown_registry_names_list_the_allowed_ones():
    with pytest.raises(
        ValueError,
        match="dads_schedule='cosine' is unknown; allowed: constant, exp_decay, saturating",
    ):
        AlgorithmConfig(dads_schedule="cosine")


def test_the_algorithm_functions_take_the_section_or_its_fields_as_keywords():
    rewards, correct = torch.tensor([1.5, 0.5, 1.0, 0.0]), torch.tensor([1, 0, 1, 0])
    lengths = torch.tensor([10.0, 40.0, 12.0, 30.0])
    config = AlgorithmConfig(dads=False, stcr_base=2.0, advantage="rloo")
    by_section = shape_advantages(rewards, correct, lengths, 4, config)
    by_keywords = shape_advantages(
        rewards, correct, lengths, 4, dads=False, stcr_base=2.0, advantage_method="rloo"
    )
    assert torch.equal(by_section.advantages, by_keywords.advantages)
    assert torch.equal(by_section.kl_weights, torch.ones(4))  # DADS off
    logp = -torch.rand(4, 3)
    loss, _ = apo_objective(logp, logp, logp, torch.ones(4, 3), by_section.advantages, None, config)
    same, _ = apo_objective(logp, logp, logp, torch.ones(4, 3), by_section.advantages, beta=1e-3)
    assert loss.item() == same.item()
    with pytest.raises(ValueError, match="stcr_bsae"):
        shape_advantages(rewards, correct, lengths, 4, stcr_bsae=2.0)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)


@pytest.mark.parametrize("advantage", ["grpo", "dr_grpo", "rloo"])
def test_one_response_per_prompt_is_refused_for_group_relative_advantages(advantage):
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    with pytest.raises(
        ValueError, match=f"rollout.group_size=1 makes every {advantage} advantage 0"
    ):
        load_config(tiny, ["rollout.group_size=1", f"algorithm.advantage={advantage}"])
    assert load_config(tiny, ["rollout.group_size=2"]).rollout.group_size == 2


def test_former_dads_schedule_names_are_read_as_the_current_ones():
    assert AlgorithmConfig(dads_schedule="official").dads_schedule == "saturating"
    assert AlgorithmConfig(dads_schedule="exp").dads_schedule == "exp_decay"


def test_a_config_without_a_model_is_refused(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  path: data.jsonl\n")
    with pytest.raises(ValueError, match=r"model\.name_or_path is not set"):
        load_config(config)
    assert load_config(config, ["model.name_or_path=tiny"]).model.name_or_path == "tiny"


def write_project(root):
    """configs/run.yaml naming a data file, an eval set, a reward file and a model folder
    beside it, by paths relative to the config file."""
    for name in ("data/train.jsonl", "data/held.jsonl", "rewards/mine.py", "models/base/x"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    config = root / "configs" / "run.yaml"
    config.parent.mkdir()
    config.write_text(
        "model: {name_or_path: ../models/base}\n"
        "data: {path: ../data/train.jsonl}\n"
        "eval: {datasets: {held: {data: {path: [../data/held.jsonl]}}}}\n"
        "rewards:\n"
        "  components: [{name: ../rewards/mine.py:score}, {name: format}]\n"
        "  correctness: score\n"
        "logging: {output_dir: runs/x}\n"
    )
    return config


def test_input_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    project = tmp_path.resolve() / "project"
    write_project(project)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_config("../project/configs/run.yaml")
    assert config.data.path == str(project / "data" / "train.jsonl")
    assert config.eval.datasets["held"].data.path == [str(project / "data" / "held.jsonl")]
    assert config.rewards.components[0].name == f"{project / 'rewards' / 'mine.py'}:score"
    assert config.rewards.components[1].name == "format"
    assert config.model.name_or_path == str(project / "models" / "base")
    assert config.logging.output_dir == "runs/x"  # outputs: relative to the current folder


def test_overrides_hub_ids_and_absolute_paths_are_left_as_given(tmp_path, monkeypatch):
    config_file = write_project(tmp_path.resolve())
    monkeypatch.chdir(tmp_path)
    config = load_config(
        config_file, ["data.path=mine.jsonl", "model.name_or_path=Qwen/Qwen2.5-VL-3B-Instruct"]
    )
    assert config.data.path == "mine.jsonl"  # typed in the shell: relative to it
    assert config.model.name_or_path == "Qwen/Qwen2.5-VL-3B-Instruct"
    config_file.write_text(f"model: {{name_or_path: tiny}}\ndata: {{path: {tmp_path}/a.jsonl}}\n")
    config = load_config(config_file)
    assert (config.model.name_or_path, config.data.path) == ("tiny", f"{tmp_path}/a.jsonl")


def test_a_path_found_only_in_the_current_folder_is_kept_with_a_warning(
    tmp_path, monkeypatch, caplog
):
    write_project(tmp_path)
    (tmp_path / "configs" / "old.yaml").write_text(
        "model: {name_or_path: tiny}\ndata: {path: data/train.jsonl}\n"
    )
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING", logger="apo.config"):
        config = load_config("configs/old.yaml")
    assert config.data.path == "data/train.jsonl"
    [warning] = [record.getMessage() for record in caplog.records]
    assert warning.startswith("data.path: data/train.jsonl is not in the config's folder")
    assert warning.endswith("relative to the file: write ../data/train.jsonl")


def test_a_missing_input_is_looked_for_beside_the_config(tmp_path, monkeypatch):
    (tmp_path / "run.yaml").write_text("model: {name_or_path: tiny}\ndata: {path: missing.jsonl}\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_config("../run.yaml")
    assert config.data.path == str(tmp_path.resolve() / "missing.jsonl")


def test_eval_sets_use_the_training_prompt_unless_they_give_their_own(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "model: {name_or_path: tiny}\n"
        "data: {path: train.jsonl, prompt: {system_prompt: null}}\n"
        "eval:\n"
        "  datasets:\n"
        "    same: {data: {path: held.jsonl}}\n"
        "    own: {data: {path: held.jsonl, prompt: {system_prompt: Be brief.}}}\n"
    )
    loaded = load_config(config)
    assert loaded.eval.datasets["same"].data.prompt == loaded.data.prompt
    assert loaded.eval.datasets["own"].data.prompt.system_prompt == "Be brief."
    saved = yaml.safe_load(config_to_yaml(loaded))
    assert saved["eval"]["datasets"]["same"]["data"]["prompt"]["system_prompt"] is None


def test_a_run_folders_config_names_its_paths_relative_to_itself(tmp_path, monkeypatch):
    """Inside the run folder: relative (they move with it); outside: absolute; the run
    folder itself: '.'; the demo's start model by its name, not its site-packages path."""
    from apo.config import RUN_CONFIG_MARK, shipped_model_path

    monkeypatch.chdir(tmp_path)
    config = load_config(
        None,
        [
            f"model.name_or_path={shipped_model_path('apo-demo-start')}",
            "data.path=runs/a/data/train.jsonl",
            "eval.datasets.held.data.path=[shared/held.jsonl]",
            "logging.output_dir=runs/a",
            "logging.overwrite=true",
        ],
    )
    text = config_to_yaml(config)
    assert text.startswith(RUN_CONFIG_MARK)
    saved = yaml.safe_load(text)
    assert saved["model"]["name_or_path"] == "apo-demo-start"
    assert saved["data"]["path"] == "data/train.jsonl"
    assert saved["eval"]["datasets"]["held"]["data"]["path"] == [
        str(tmp_path / "shared" / "held.jsonl")
    ]
    assert saved["logging"]["output_dir"] == "."
    assert saved["logging"]["overwrite"] is False  # an action of that run, not a setting
    resolved = yaml.safe_load(config_to_yaml(config, run_folder=False))  # --print-config
    assert resolved["logging"]["output_dir"] == "runs/a"


def test_a_moved_run_folders_config_loads_from_any_folder(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "a"
    (run / "data").mkdir(parents=True)
    (run / "data" / "train.jsonl").write_text("")
    monkeypatch.chdir(tmp_path)
    overrides = ["model.name_or_path=tiny", "data.path=runs/a/data/train.jsonl"]
    config = load_config(None, [*overrides, "logging.output_dir=runs/a"])
    (run / "config.yaml").write_text(config_to_yaml(config))
    moved = tmp_path / "archive" / "b"
    moved.parent.mkdir()
    run.rename(moved)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    loaded = load_config("../archive/b/config.yaml")
    assert loaded.logging.output_dir == str(moved)
    assert loaded.data.path == str(moved / "data" / "train.jsonl")
    # an override typed in the shell stays relative to the shell's folder
    again = load_config("../archive/b/config.yaml", ["logging.output_dir=runs/c"])
    assert again.logging.output_dir == "runs/c"


def test_the_demo_start_model_saved_in_another_environment_is_this_ones(tmp_path):
    from apo.config import portable_config, shipped_model_path

    other = "/elsewhere/venv/lib/python3.11/site-packages/apo/demo/start_model"
    dumped = {"model": {"name_or_path": other}, "logging": {"output_dir": str(tmp_path)}}
    assert portable_config(dumped)["model"]["name_or_path"] == "apo-demo-start"
    (tmp_path / "train.jsonl").write_text("")
    config_file = tmp_path / "c.yaml"
    config_file.write_text("model: {name_or_path: apo-demo-start}\ndata: {path: train.jsonl}\n")
    assert load_config(config_file).model.name_or_path == shipped_model_path("apo-demo-start")
    assert Path(shipped_model_path("apo-demo-start"), "config.json").is_file()


@pytest.mark.parametrize(
    ("batch", "epochs", "off_policy"),
    [
        ({"prompts_per_step": 4, "prompts_per_update": 4}, 1, False),
        ({"prompts_per_step": 4, "prompts_per_update": 2}, 1, True),
        ({"prompts_per_step": 4, "prompts_per_update": 4}, 2, True),
    ],
)
def test_the_off_policy_decision_is_made_once_by_the_config(batch, epochs, off_policy):
    """Several updates per rollout, or several epochs: the trainer's old log-prob pass
    and the memory estimate both ask TrainConfig.off_policy."""
    config = TrainConfig.model_validate(
        {
            "model": {"name_or_path": "tiny"},
            "data": {"path": "data.jsonl"},
            "batch": batch,
            "algorithm": {"ppo_epochs": epochs},
        }
    )
    assert config.updates_per_step == batch["prompts_per_step"] // batch["prompts_per_update"]
    assert config.off_policy is off_policy
