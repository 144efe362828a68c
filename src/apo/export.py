"""Hugging Face model folders: the run's ``final_model`` and ``apo export CHECKPOINT``.

Both go through :func:`save_model_folder`, so a checkpoint exported after the run
holds the same weights as the ``final_model`` written from the same state. A
checkpoint is loaded as the trainer built its policy: the base model of its
config, in its dtype, then the saved weights (or the LoRA adapter) on top.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import merge_fsdp_weights

from apo.checkpoint import (
    STATE_FILE,
    STATE_KEYS,
    CheckpointError,
    describe_write_error,
    list_checkpoints,
    read_trainer_state,
    verify_checkpoint,
)
from apo.models import LoadedModel, ModelConfig, has_adapters, load_model

WEIGHTS_FILE = "model.safetensors"  # what accelerate saves for a full fine-tune
ADAPTER_DIR = "adapter"  # the LoRA adapter (see checkpoint.register_lora_hooks)
SHARDED_DIR = "pytorch_model_fsdp_0"  # accelerate's FSDP sharded weights, one file per process
# DeepSpeed ZeRO-1/2 (ZeRO-3 is refused): whole weights, under "module"
DEEPSPEED_FILE = "pytorch_model/mp_rank_00_model_states.pt"


def save_model_folder(
    model: Any,
    processor: Any,
    output: str | Path,
    *,
    merge_lora: bool,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` and its processor as a folder ``from_pretrained`` loads.

    A peft model is merged into plain weights when ``merge_lora`` (in place: the
    adapters are gone afterwards), else saved as an adapter whose
    ``adapter_config.json`` names the base model. ``state_dict``: the full weights
    when they are sharded over processes (accelerate's ``get_state_dict``).

    Written under a temporary name and renamed into place (replacing an earlier
    folder of that name only then): a failed write (a full disk) leaves no partial
    folder and raises :class:`~apo.checkpoint.CheckpointError` with the reason.
    """
    output = Path(output)
    staging = output.parent / f".tmp-{output.name}"
    if merge_lora and has_adapters(model):
        model = model.merge_and_unload()
        state_dict = None  # it held the adapters, not the merged weights
    try:
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging, state_dict=state_dict, safe_serialization=True)
        processor.save_pretrained(staging)
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    except Exception as error:  # torch/safetensors raise their own types on a full disk
        reason = describe_write_error(error, output.parent)
        shutil.rmtree(staging, ignore_errors=True)
        raise CheckpointError(f"could not write the model folder {output}: {reason}") from error
    return output


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a complete checkpoint of apo train (a ``step-N`` folder).

    Its trainer state holds the run's config: a Hugging Face Trainer checkpoint
    has a file of the same name, without it.
    """
    try:
        state = read_trainer_state(path)
    except (OSError, ValueError):  # no such file, or not JSON
        return False
    return isinstance(state, dict) and all(key in state for key in STATE_KEYS)


def check_checkpoint(path: str | Path) -> None:
    """ValueError, in one line, when ``path`` is not an exportable checkpoint
    (:class:`~apo.checkpoint.DamagedCheckpoint` when a file of it is damaged)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path} is not a checkpoint: no such folder")
    if not is_checkpoint(path):
        saved = list_checkpoints(path / "checkpoints")
        hint = (
            f"; it is a run folder: give one of its checkpoints, e.g. {saved[-1]}" if saved else ""
        )
        raise ValueError(f"{path} is not a checkpoint of apo train (no {STATE_FILE} of apo){hint}")
    kinds = (WEIGHTS_FILE, ADAPTER_DIR, SHARDED_DIR, DEEPSPEED_FILE)
    if not any((path / name).exists() for name in kinds):
        raise ValueError(f"checkpoint {path} holds no weights: none of {', '.join(kinds)}")
    verify_checkpoint(path, processes=0)  # no RNG state is needed to export


def load_checkpoint_model(
    checkpoint: str | Path,
    dtype: str | None = None,
    device: torch.device | str | None = None,
    merge_lora: bool = False,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """The policy saved in ``checkpoint``, with its processor; with LoRA, a peft
    model, or plain weights when ``merge_lora``.

    ``dtype``: None for the dtype the run trained in, else a ``ModelConfig.dtype``.
    ``trust_remote_code``: the caller's choice alone. A checkpoint may come from
    someone else: its own ``trust_remote_code`` is never read, so a checkpoint
    naming a model folder with custom code cannot make us run that code.
    """
    checkpoint = Path(checkpoint)
    check_checkpoint(checkpoint)
    return _load_checked(checkpoint, dtype, device, merge_lora, trust_remote_code)


def _load_checked(
    checkpoint: Path,
    dtype: str | None,
    device: torch.device | str | None,
    merge_lora: bool,
    trust_remote_code: bool,
) -> LoadedModel:
    """:func:`load_checkpoint_model` of a checkpoint :func:`check_checkpoint` passed."""
    from safetensors.torch import load_file
    from safetensors.torch import load_model as load_weights

    state = read_trainer_state(checkpoint)
    saved = state["config"]["model"]
    # Checkpoints written before "dtype" was recorded: the config's choice, on this machine.
    dtype = dtype or state.get("dtype") or saved.get("dtype", "auto")
    base = ModelConfig(
        name_or_path=saved["name_or_path"],
        dtype=dtype,
        trust_remote_code=trust_remote_code,
    )
    loaded = load_model(base, device=device)
    if (checkpoint / ADAPTER_DIR).is_dir():
        from peft import PeftModel  # seconds to import: only for LoRA checkpoints

        loaded.model = PeftModel.from_pretrained(loaded.model, checkpoint / ADAPTER_DIR)
        if merge_lora:
            loaded.model = loaded.model.merge_and_unload()
    elif (checkpoint / SHARDED_DIR).is_dir():
        # FSDP's shards merged into whole weights, in one process
        with tempfile.TemporaryDirectory() as merged:
            merge_fsdp_weights(str(checkpoint / SHARDED_DIR), merged, safe_serialization=True)
            # every name of a tied weight is there: torch's loader expects them all
            loaded.model.load_state_dict(load_file(Path(merged) / WEIGHTS_FILE), strict=True)
    elif (checkpoint / DEEPSPEED_FILE).is_file():
        saved_state = torch.load(checkpoint / DEEPSPEED_FILE, map_location="cpu", weights_only=True)
        loaded.model.load_state_dict(saved_state["module"], strict=True)
    else:
        # strict: a checkpoint of another architecture fails here, naming the keys
        load_weights(loaded.model, checkpoint / WEIGHTS_FILE, strict=True)
    return loaded


def load_checkpoint_as_model(
    config: ModelConfig, device: torch.device | str | None = None
) -> LoadedModel:
    """``load_model`` for a checkpoint named by ``config.name_or_path``: its policy in
    ``config.dtype``, LoRA merged (what ``apo eval --model CHECKPOINT`` evaluates);
    remote code only when ``config.trust_remote_code`` (the user's flag) allows it."""
    return load_checkpoint_model(
        config.name_or_path,
        config.dtype,
        device,
        merge_lora=True,
        trust_remote_code=config.trust_remote_code,
    )


def export_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    merge_lora: bool = True,
    trust_remote_code: bool = False,
) -> Path:
    """Write ``checkpoint``'s model as a Hugging Face folder ``output``; returns it.

    Refuses (ValueError) a folder that is not a checkpoint and an ``output`` that
    exists and is not empty: nothing of the user's is ever replaced.
    ``trust_remote_code``: as in :func:`load_checkpoint_model`, the caller's alone.
    """
    check_checkpoint(checkpoint)
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"{output} already exists and is not empty: choose a new folder")
    # checked above, before the output: its files are not read a second time
    loaded = _load_checked(Path(checkpoint), None, None, False, trust_remote_code)
    return save_model_folder(loaded.model, loaded.processor, output, merge_lora=merge_lora)
