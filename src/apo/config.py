"""One typed, validated configuration: YAML file + dotted command-line overrides.

:class:`TrainConfig` composes the sections the layers own (``ModelConfig``,
``DataConfig``, ``AlgorithmConfig``..., each in a light config module) with the
trainer's own (``reference``, ``optim``, ``batch``, ``training``, ``logging``,
``checkpoint``); importing it loads no torch or transformers. Every field
carries its help text next to its default, so ``apo train --reference`` (and
``configs/reference.yaml``, generated from it) documents every option. Unknown
keys and bad values fail before anything loads, naming the key and the allowed
values. A run folder's ``config.yaml`` is the config made portable
(:func:`portable_config`): its paths hold wherever the folder moves.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from apo.algorithms import AlgorithmConfig
from apo.algorithms.names import GROUP_RELATIVE
from apo.data import DataConfig
from apo.evaluation.config import EvalConfig
from apo.models import TINY_MODEL_NAME, LoraConfig, ModelConfig
from apo.models.config import ReferenceKind
from apo.models.packaged import PACKAGED_MODELS
from apo.nested import merge
from apo.rewards import RewardConfig
from apo.rollout import RolloutConfig
from apo.section import Section

logger = logging.getLogger(__name__)


class ReferenceConfig(Section):
    """The frozen reference policy of the KL term."""

    kind: ReferenceKind = Field(
        "auto",
        description=(
            "'auto': the adapter-disabled base with LoRA, else a frozen copy; 'none' needs "
            "algorithm.beta = 0."
        ),
    )
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="dtype of a frozen copy; None: the policy's."
    )
    device: str | None = Field(None, description="Device of a frozen copy; None: the policy's.")


class OptimConfig(Section):
    """The optimiser and learning-rate schedule."""

    lr: float = Field(1e-6, gt=0, description="Peak learning rate (official 1e-6).")
    scheduler: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="Decay after warmup: constant, linear (to 0) or cosine."
    )
    min_lr_ratio: float = Field(
        0.0, ge=0, le=1, description="cosine/linear: final lr as a fraction of lr."
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Warmup, as a fraction of all steps.")
    betas: tuple[float, float] = Field((0.9, 0.95), description="Adam betas (official 0.9, 0.95).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    eps: float = Field(1e-8, gt=0, description="Adam epsilon.")
    grad_clip: float | None = Field(1.0, gt=0, description="Max global grad norm; None: off.")


class BatchConfig(Section):
    """How much data each step uses and how it is cut for the update."""

    prompts_per_step: int = Field(
        128, ge=1, description="Prompts per rollout, over all processes (official 128)."
    )
    prompts_per_update: int = Field(
        8,
        ge=1,
        description=(
            "Prompts per optimizer update (official train batch 64 = 8 prompts x 8); a step "
            "makes prompts_per_step / prompts_per_update updates per PPO epoch."
        ),
    )
    micro_batch_size: int = Field(
        4, ge=1, description="Sequences per forward/backward on one process (grad accumulation)."
    )
    max_tokens_per_micro_batch: int | None = Field(
        None,
        ge=1,
        description=(
            "Cut each update into micro-batches by tokens instead of rows: rows sorted by "
            "length, as many per micro-batch as fit in this many tokens (rows x padded "
            "prompt + response length; a longer row goes alone). Less padding, same "
            "gradient. None: micro_batch_size rows each, in rollout order."
        ),
    )
    share_prompts: bool = Field(
        False,
        description=(
            "Run each prompt once per micro-batch for all its responses (a KV-cache "
            "prefill its responses continue from), in the log-prob passes and the update: "
            "the same log-probs up to float rounding, the prompts' work divided by the "
            "group size. Under gradient checkpointing the update keeps full rows; not "
            "with FSDP2 or DeepSpeed. A token budget then counts each prompt once."
        ),
    )
    logprob_batch_size: int | None = Field(
        None,
        ge=1,
        description=(
            "Sequences per no-grad forward (reference and old log-probs), cut across "
            "micro-batches; None: micro_batch_size (the micro-batches' encodings are reused)."
        ),
    )
    logprob_chunk_size: int = Field(
        1024, ge=1, description="Response tokens per output-head chunk in log-prob passes."
    )


class TrainingConfig(Section):
    """Length of the run, seed and numerics."""

    max_steps: int | None = Field(None, ge=1, description="Steps to train; None: from episodes.")
    episodes: float = Field(
        2.0, gt=0, description="Passes over the data when max_steps is None (official 2)."
    )
    seed: int = Field(42, description="Seed of data order, sampling and initialisation.")
    precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="Autocast mixed precision for forward passes (weights: model.dtype)."
    )
    max_nonfinite_updates: int = Field(
        3,
        ge=1,
        description=(
            "Updates whose gradient is NaN/inf are skipped and counted; this many in a row stop "
            "the run (with a checkpoint of the last good weights)."
        ),
    )


class LoggingConfig(Section):
    """Where metrics go."""

    output_dir: str = Field(
        "runs/apo",
        description=(
            "Run folder: metrics, samples, checkpoints; relative to the current folder, not to "
            "the config file (except in a run folder's own config.yaml, where '.' is that "
            "folder)."
        ),
    )
    overwrite: bool = Field(
        False,
        description=(
            "A fresh run (not --resume) in a folder holding an earlier run's files "
            "(config.yaml, metrics.jsonl, samples.jsonl, evals.jsonl, checkpoints/, "
            "final_model/): true deletes them (other files stay), false refuses. Set by apo "
            "train --overwrite; saved as false in the run's config.yaml."
        ),
    )
    log_every: int = Field(1, ge=1, description="Console summary every N steps.")
    samples_per_step: int = Field(
        4, ge=0, description="Completions written to samples.jsonl per step."
    )
    tensorboard: bool = Field(False, description="Also log to tensorboard (needs tensorboard).")
    wandb: bool = Field(False, description="Also log to Weights & Biases (needs wandb).")
    wandb_project: str = Field("apo", description="wandb project.")
    wandb_mode: Literal["online", "offline"] = Field("offline", description="wandb mode.")


class CheckpointConfig(Section):
    """Checkpoints (full training state) and the final exported model."""

    every: int = Field(50, ge=0, description="Save every N steps; 0: only at the end.")
    keep_last: int = Field(3, ge=1, description="Keep the last K checkpoints.")
    export_final_model: bool = Field(
        True, description="Write a from_pretrained-loadable folder at the end."
    )
    merge_lora: bool = Field(True, description="Merge LoRA adapters into the exported model.")


class TrainConfig(Section):
    """Everything ``apo train`` needs."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    rewards: RewardConfig = Field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="before")
    @classmethod
    def _model_is_named(cls, data: Any) -> Any:
        """A forgotten model must not silently train the built-in toy model."""
        if isinstance(data, dict):
            model = data.get("model")
            name = model.get("name_or_path") if isinstance(model, dict) else None
            name = getattr(model, "name_or_path", name)
            if not name:
                raise ValueError(
                    "model.name_or_path is not set: name a model folder or hub id "
                    "('tiny' is the built-in toy model)"
                )
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> TrainConfig:
        if self.data.path is None:
            raise ValueError("data.path is not set: give a data file or datasets folder")
        batch = self.batch
        if batch.prompts_per_step % batch.prompts_per_update:
            raise ValueError(
                f"batch.prompts_per_update={batch.prompts_per_update} must divide "
                f"batch.prompts_per_step={batch.prompts_per_step}"
            )
        if self.rollout.group_size == 1 and self.algorithm.advantage in GROUP_RELATIVE:
            raise ValueError(
                f"rollout.group_size=1 makes every {self.algorithm.advantage} advantage 0 (each "
                "response is compared with the others of its group): use at least 2 (official 8)"
            )
        if self.rewards.overlong_buffer > self.rollout.max_new_tokens:
            raise ValueError(
                f"rewards.overlong_buffer={self.rewards.overlong_buffer} is longer than "
                f"rollout.max_new_tokens={self.rollout.max_new_tokens}"
            )
        if self.algorithm.beta > 0 and self.reference.kind == "none":
            raise ValueError("reference.kind='none' needs algorithm.beta = 0 (no KL term)")
        if self.reference.kind == "adapter_disabled" and not self.lora.enabled:
            raise ValueError("reference.kind='adapter_disabled' needs lora.enabled = true")
        for eval_set in self.eval.datasets.values():
            if "prompt" not in eval_set.data.model_fields_set:
                # Evaluated the way it is trained, unless the set says otherwise.
                eval_set.data.prompt = self.data.prompt.model_copy()
        if (self.eval.every > 0 or self.eval.at_start) and not self.eval.datasets:
            raise ValueError("eval.every > 0 or eval.at_start needs eval.datasets")
        return self

    @property
    def updates_per_step(self) -> int:
        """Optimizer updates per rollout: prompts_per_step / prompts_per_update."""
        return self.batch.prompts_per_step // self.batch.prompts_per_update

    @property
    def off_policy(self) -> bool:
        """Whether an update may train on responses its current policy did not sample
        (several updates per rollout, or several epochs): then the old log-probs are
        computed and the PPO ratio is not 1."""
        return self.updates_per_step > 1 or self.algorithm.ppo_epochs > 1

    def total_steps(self, num_examples: int) -> int:
        if self.training.max_steps is not None:
            return self.training.max_steps
        per_epoch = num_examples // self.batch.prompts_per_step
        return max(1, math.ceil(self.training.episodes * per_epoch))


# Settings that decide which responses a training step keeps and how it rewards them,
# never what an evaluation measures: two runs that differ only in these evaluate the
# start model identically (apo compare and scripts/real_model.py reuse its evaluation).
TRAINING_ONLY_SETTINGS = (
    "rollout.dynamic_sampling",
    "rollout.dynamic_sampling_max_rounds",
    "rewards.overlong_buffer",
    "rewards.overlong_penalty",
)


def without_training_only(config: dict[str, Any]) -> dict[str, Any]:
    """A dumped config (``model_dump(mode="json")``) without :data:`TRAINING_ONLY_SETTINGS`."""
    config = copy.deepcopy(config)
    for dotted in TRAINING_ONLY_SETTINGS:
        section, key = dotted.split(".")
        config.get(section, {}).pop(key, None)
    return config


class ConfigError(ValueError):
    """A configuration problem, with the key and what is allowed."""


def _allowed_keys(model: type[BaseModel], path: tuple) -> list[str]:
    for key in path:
        field = model.model_fields.get(key)
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return sorted(model.model_fields)


def format_validation_error(error: ValidationError, model: type[BaseModel]) -> str:
    lines = []
    for problem in error.errors():
        location = [str(part) for part in problem["loc"] if not isinstance(part, int)]
        key = ".".join(location) or "(config)"
        if problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, tuple(location[:-1]))
            lines.append(f"config key {key!r}: unknown key; allowed: {', '.join(allowed)}")
        elif not location:  # a rule across sections (the message names the keys)
            lines.append(problem["msg"].removeprefix("Value error, "))
        else:
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"config key {key!r}: {message} (got {problem.get('input')!r})")
    return "\n".join(lines)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[x, y]"]`` -> ``{"a": {"b": 1}, "c": ["x", "y"]}`` (values as YAML)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({error})") from None
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part!r}")
        node[parts[-1]] = value
    return tree


def _config_relative(
    value: str, folder: Path, key: str, found: Callable[[Path], bool] = Path.exists
) -> str | None:
    """``value`` as an absolute path when ``found`` in the config's ``folder``; unchanged,
    with a warning, when found only relative to the current folder; None when in neither."""
    path = Path(value)
    if path.expanduser().is_absolute():
        return value
    if found(folder / path):
        return os.path.abspath(folder / path)
    if found(path):  # a config written when paths were relative to the current folder
        logger.warning(
            "%s: %s is not in the config's folder %s but in the current folder: using that "
            "one. Paths in a config file are relative to the file: write %s",
            key,
            value,
            folder,
            os.path.relpath(path.absolute(), folder.absolute()),
        )
        return value
    return None


def _input_paths(raw: dict[str, Any], convert: Callable[[str, str, str], str]) -> None:
    """Replace each input path of a config mapping by ``convert(value, kind, key)``, in
    place: data.path and every eval set's data.path (kind "data"), the file of reward
    components ``file.py:function`` ("reward") and model.name_or_path ("model"; also a
    hub id or a built-in name, which ``convert`` tells apart). Values of the wrong type
    are left for validation to report."""

    def mapping(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    data_sections = {"data.path": mapping(raw.get("data"))}
    for name, entry in mapping(mapping(raw.get("eval")).get("datasets")).items():
        data_sections[f"eval.datasets.{name}.data.path"] = mapping(mapping(entry).get("data"))
    for key, data in data_sections.items():
        if isinstance(data.get("path"), list):
            data["path"] = [
                convert(p, "data", key) if isinstance(p, str) else p for p in data["path"]
            ]
        elif isinstance(data.get("path"), str):
            data["path"] = convert(data["path"], "data", key)

    components = mapping(raw.get("rewards")).get("components")
    for index, component in enumerate(components if isinstance(components, list) else []):
        file, _, function = str(mapping(component).get("name", "")).rpartition(":")
        if file.endswith(".py"):  # not a built-in name or a module:function
            file = convert(file, "reward", f"rewards.components[{index}].name")
            component["name"] = f"{file}:{function}"

    model = mapping(raw.get("model"))
    if isinstance(model.get("name_or_path"), str):
        model["name_or_path"] = convert(model["name_or_path"], "model", "model.name_or_path")


def resolve_input_paths(raw: dict[str, Any], folder: Path) -> None:
    """Make the input paths of a config file's mapping relative to its ``folder``, in place.

    data.path, every eval set's data.path, reward components ``file.py:function``, and
    model.name_or_path when it names a folder there (else it is a hub id or a built-in
    name). Output folders (logging.output_dir) stay relative to the current folder.
    """

    def convert(value: str, kind: str, key: str) -> str:
        if kind != "model":  # missing everywhere: the error will name the config-relative path
            return _config_relative(value, folder, key) or os.path.abspath(folder / value)
        if value == TINY_MODEL_NAME or value in PACKAGED_MODELS or value in SHIPPED_MODELS:
            return value
        return _config_relative(value, folder, key, _model_source) or value  # else a hub id

    _input_paths(raw, convert)


def _model_source(path: Path) -> bool:
    """A model folder, or a GGUF model file."""
    return path.is_dir() or (path.suffix == ".gguf" and path.is_file())


# Models shipped inside the apo package, by the name a config gives them: a run's
# config.yaml names them so, and so resumes in any environment where apo is installed.
SHIPPED_MODELS = {"apo-demo-start": Path("demo", "start_model")}
_PACKAGE = Path(__file__).resolve().parent


def shipped_model_path(name: str) -> str:
    """The folder of a model shipped with apo (:data:`SHIPPED_MODELS`)."""
    return str(_PACKAGE / SHIPPED_MODELS[name])


def _shipped_model_name(path: str) -> str | None:
    """The name of the shipped model ``path`` is, in this installation of apo or in
    another (a config saved in another virtual environment)."""
    parts = Path(path).parts
    for name, inside in SHIPPED_MODELS.items():
        if parts[-len(inside.parts) - 1 :] == (_PACKAGE.name, *inside.parts):
            return name
    return None


# The first line of a run folder's config.yaml: it marks a file whose paths, output_dir
# included, are relative to itself.
RUN_CONFIG_MARK = "# The config of the apo train run in this folder."
RUN_CONFIG_HEADER = (
    f"{RUN_CONFIG_MARK} Every path is relative to this file\n"
    "# (logging.output_dir '.' is this folder) or absolute: `apo train THIS_FILE --resume`\n"
    "# continues the run from any folder, also after the run folder has moved. To start\n"
    "# another run from a copy of it, set logging.output_dir.\n"
)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config, apply dotted overrides, validate. ConfigError says what is wrong.

    Input paths in the file are relative to the file (:func:`resolve_input_paths`); in
    overrides, to the current folder, as anything typed on a command line. In a run
    folder's own config.yaml (:data:`RUN_CONFIG_HEADER`), logging.output_dir is
    relative to the file too: '.' is the run folder, wherever it is now.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            text = path.read_text()
            raw = yaml.safe_load(text) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        resolve_input_paths(raw, path.parent)
        logging_section = raw.get("logging")
        if text.startswith(RUN_CONFIG_MARK) and isinstance(logging_section, dict):
            output_dir = logging_section.get("output_dir")
            if isinstance(output_dir, str) and not Path(output_dir).expanduser().is_absolute():
                logging_section["output_dir"] = os.path.abspath(path.parent / output_dir)
    raw = merge(raw, parse_overrides(overrides or []))
    model = raw.get("model")
    if isinstance(model, dict) and model.get("name_or_path") in SHIPPED_MODELS:
        model["name_or_path"] = shipped_model_path(model["name_or_path"])
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as error:
        source = f" ({path})" if path else ""
        raise ConfigError(
            f"invalid configuration{source}:\n{format_validation_error(error, TrainConfig)}"
        ) from None


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """A dumped config (``model_dump(mode="json")``) as its run folder's config.yaml holds
    it: usable from any folder and after the run folder has moved.

    The run folder is logging.output_dir (relative to the current folder, as when
    training). An input path inside it becomes relative to it (it moves with the
    folder), any other absolute; a model shipped with apo is named
    (:data:`SHIPPED_MODELS`), so another environment finds its own copy; a hub id or a
    built-in name stays; output_dir is '.', the folder itself; logging.overwrite is
    false (an action of the run that wrote it, not a setting to repeat).
    """
    config = copy.deepcopy(config)
    logging_section = config.setdefault("logging", {})
    run = Path(os.path.abspath(Path(str(logging_section.get("output_dir", "."))).expanduser()))

    def place(value: str) -> str:
        absolute = Path(os.path.abspath(Path(value).expanduser()))
        if absolute == run or run in absolute.parents:
            return os.path.relpath(absolute, run)
        return str(absolute)

    def convert(value: str, kind: str, key: str) -> str:
        if kind != "model":
            return place(value)
        shipped = _shipped_model_name(value) if value not in SHIPPED_MODELS else value
        if shipped is not None:
            return shipped
        if value == TINY_MODEL_NAME or value in PACKAGED_MODELS:
            return value
        if Path(value).expanduser().is_absolute() or _model_source(Path(value)):
            return place(value)
        return value  # a hub id

    _input_paths(config, convert)
    logging_section["output_dir"] = "."
    if "overwrite" in logging_section:
        logging_section["overwrite"] = False
    return config


def config_to_yaml(config: TrainConfig, run_folder: bool = True) -> str:
    """The config as YAML. ``run_folder``: the run folder's config.yaml
    (:func:`portable_config`, under :data:`RUN_CONFIG_HEADER`), written into
    logging.output_dir; else the config as resolved (``apo train --print-config``)."""
    dumped = config.model_dump(mode="json")
    if not run_folder:
        return yaml.safe_dump(dumped, sort_keys=False)
    return RUN_CONFIG_HEADER + yaml.safe_dump(portable_config(dumped), sort_keys=False)


def reference_yaml() -> str:
    """Every option with its default and help text, as commented YAML."""
    lines = [
        "# apo train: every option, its default and what it does. Input paths (data, reward",
        "# files, a local model folder) are relative to the config file; output_dir to the",
        "# current folder.",
        "",
    ]

    def emit(model: BaseModel, indent: int) -> None:
        pad = "  " * indent
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if field.description:
                lines.append(f"{pad}# {field.description}")
            if isinstance(value, BaseModel):
                doc = (type(value).__doc__ or "").strip().splitlines()
                if doc and not field.description:
                    lines.append(f"{pad}# {doc[0]}")
                lines.append(f"{pad}{name}:")
                emit(value, indent + 1)
            else:
                dumped = yaml.safe_dump({name: _plain(value)}, default_flow_style=True, width=1000)
                lines.append(pad + dumped.strip().removeprefix("{").removesuffix("}"))

    emit(TrainConfig.model_construct(), 0)  # defaults, without the cross-section checks
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
