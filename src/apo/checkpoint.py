"""Checkpoints: the full training state, written atomically, the last K kept.

A checkpoint folder ``step-00000050`` holds what ``accelerate`` saves (model
weights as safetensors, optimizer, every process's RNG states; all read back with
``weights_only=True``) and ``trainer_state.json`` (step, data position, learning-rate
schedule, config, the weights' dtype). It is written under a
temporary name and renamed into place only when complete, so a crash mid-write
never leaves a folder that looks like a checkpoint, and the previous one stays.
With LoRA, only the adapter is saved (``adapter/``, peft's safetensors format).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
STATE_KEYS = ("step", "total_steps", "sampler", "scheduler", "config")
_SAMPLER_COUNTS = ("epoch", "position", "num_examples", "batch_size")
_NAME = re.compile(r"^step-(\d{8})$")
_NEARLY_FULL = 1024**2  # free bytes under which a failed write is a full disk


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(directory: str | Path) -> Path | None:
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


class DamagedCheckpoint(ValueError):
    """A checkpoint whose files cannot be read back; the message names the file."""


def read_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint) / STATE_FILE
    if not path.is_file():
        raise ValueError(f"{checkpoint} is not a complete apo checkpoint (no {STATE_FILE})")
    try:
        state = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedCheckpoint(f"{path} is not valid JSON ({error})") from None
    return state


def verify_checkpoint(checkpoint: str | Path, processes: int = 1) -> None:
    """Raise :class:`DamagedCheckpoint` naming the first file of ``checkpoint`` that
    cannot be read back, before any of it is loaded.

    Checks the trainer state (JSON with :data:`STATE_KEYS`), every safetensors file
    (its header and that the file holds all the bytes the header announces), every
    ``torch.save`` file (a zip archive: each member's CRC), that each folder of FSDP
    shards has its index (``.metadata``), and that the RNG state of
    each of ``processes`` processes is there (accelerate skips a missing or unreadable
    one silently, which would break bit-exact resume).
    """
    from safetensors import safe_open  # the checks read only headers: cheap

    checkpoint = Path(checkpoint)
    state = read_trainer_state(checkpoint)
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise DamagedCheckpoint(f"{checkpoint / STATE_FILE} lacks {', '.join(missing)}")
    problem = _trainer_state_problem(state)
    if problem:
        raise DamagedCheckpoint(f"{checkpoint / STATE_FILE} is damaged: {problem}")
    for path in sorted(checkpoint.rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as error:  # safetensors raises its own error types
            raise DamagedCheckpoint(f"{path} is damaged ({error})") from None
    for pattern in ("*.bin", "*.pkl", "*.pt"):
        for path in sorted(checkpoint.rglob(pattern)):
            try:
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
            except (zipfile.BadZipFile, OSError) as error:
                raise DamagedCheckpoint(f"{path} is damaged ({error})") from None
            if bad is not None:
                raise DamagedCheckpoint(f"{path} is damaged (a bad CRC in {bad})")
    for shards in sorted({path.parent for path in checkpoint.rglob("*.distcp")}):
        # torch.distributed.checkpoint writes its index once every shard is written
        if not (shards / ".metadata").is_file():
            raise DamagedCheckpoint(f"{shards} is incomplete (no .metadata index of its shards)")
    for rank in range(processes):
        path = checkpoint / f"random_states_{rank}.pkl"
        if not path.is_file():
            raise DamagedCheckpoint(
                f"{path} is missing (the RNG state of process {rank}; "
                f"resumed with {processes} process(es))"
            )
        problem = _rng_state_problem(path)
        if problem:
            raise DamagedCheckpoint(f"{path} is damaged ({problem}; bit-exact resume needs it)")


def _trainer_state_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with the values of a trainer state (its keys are there), if anything."""
    counts = {"step": state["step"], "total_steps": state["total_steps"]}
    sampler = state["sampler"]
    if isinstance(sampler, dict):
        counts |= {f"sampler.{key}": sampler.get(key) for key in _SAMPLER_COUNTS}
    else:
        return f"sampler is {type(sampler).__name__}, not an object"
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{name} is {value!r}, not a count"
    seed = sampler.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):  # any integer, negative too
        return f"sampler.seed is {seed!r}, not an integer"
    scheduler = state["scheduler"]
    if not isinstance(scheduler, dict) or not isinstance(scheduler.get("base_lrs"), list):
        return "scheduler is not a learning-rate schedule's state"
    if not isinstance(state["config"], dict):
        return f"config is {type(state['config']).__name__}, not an object"
    return None


def _rng_state_problem(path: Path) -> str | None:
    """Why accelerate could not restore the RNG states in ``path`` (it skips such a file
    with an info-level log line), or None. Restored here into fresh generators."""
    import random

    import numpy as np
    import torch
    from accelerate.utils import load  # torch.load, weights only, numpy's state allowed

    try:
        states = load(path, map_location="cpu")
        random.Random().setstate(states["random_state"])
        np.random.RandomState().set_state(states["numpy_random_seed"])
        torch.Generator().set_state(states["torch_manual_seed"])
    except Exception as error:  # any of: not a dict, a key missing, a wrong value
        return f"{type(error).__name__}: {error}"
    return None


def _existing(path: Path) -> Path:
    """``path`` or its nearest parent that exists (whose disk the path will be on)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(directory: str | Path, needed: int, keep_last: int) -> None:
    """Refuse to start a run whose first checkpoint cannot fit on the disk; warn when
    the ``keep_last`` checkpoints (plus the one being written) will not."""
    directory = Path(directory)
    free = shutil.disk_usage(_existing(directory)).free
    megabytes = 1024**2
    if free < needed:
        raise CheckpointError(
            f"not enough disk space for a checkpoint in {directory}: one needs about "
            f"{needed / megabytes:.0f} MB, {free / megabytes:.0f} MB are free. Free some space "
            "or point logging.output_dir to another disk"
        )
    if free < needed * (keep_last + 1):
        logger.warning(
            "%s has %.0f MB free; %d checkpoints of about %.0f MB (checkpoint.keep_last + the "
            "one being written) will not fit",
            directory,
            free / megabytes,
            keep_last + 1,
            needed / megabytes,
        )


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


class CheckpointError(RuntimeError):
    """A checkpoint or model folder could not be written; what was there before
    (earlier checkpoints, an earlier folder of the same name) is untouched."""


def any_process_failed(accelerator, error: BaseException | None) -> bool:
    """Whether any process hit an error (every process must take the same branch)."""
    if getattr(accelerator, "num_processes", 1) == 1:
        return error is not None
    import torch

    flag = torch.tensor(float(error is not None), device=accelerator.device)
    return bool(accelerator.reduce(flag, "max"))


def _finalise(staging: Path, final: Path, state: dict[str, Any]) -> None:
    """Write the trainer state, flush everything to disk, then rename into place."""
    (staging / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    _fsync_tree(staging)
    replaced = None
    if final.exists():  # the same step saved again (e.g. a signal right after a save):
        replaced = final.parent / f".old-{final.name}"  # keep it until the new one is in place
        shutil.rmtree(replaced, ignore_errors=True)
        final.rename(replaced)
    try:
        staging.rename(final)
    except OSError:
        if replaced is not None:
            replaced.rename(final)
        raise
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


def clean_staging(directory: str | Path) -> list[str]:
    """Remove what an interrupted checkpoint write left in ``directory``; returns
    the names removed.

    ``.tmp-step-N`` is a checkpoint that was never finished. ``.old-step-N`` is a
    complete checkpoint that was being replaced by a new save of the same step:
    it is put back when the new one never arrived, else removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".old-step-"):
            final = directory / path.name.removeprefix(".old-")
            if not final.exists():
                path.rename(final)
                continue
        elif not path.name.startswith(".tmp-step-"):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


def describe_write_error(error: BaseException, directory: str | Path) -> str:
    """The reason a write failed, in words a user acts on.

    torch and safetensors do not raise OSError on a full disk (torch: ``RuntimeError:
    [enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534``,
    safetensors: ``SafetensorError``), so a disk with (nearly) nothing free is named
    as full whatever the exception says.
    """
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = f"{type(error).__name__}: {error}"
    try:
        free = shutil.disk_usage(_existing(Path(directory))).free
    except OSError:
        return text
    if free < _NEARLY_FULL:
        return f"No space left on device ({free} bytes free; {text})"
    return text


class _SharedTensorNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


@contextlib.contextmanager
def tied_weights_notice_silenced() -> Iterator[None]:
    """Without accelerate's "Removed shared tensor ... while saving" on every checkpoint:
    safetensors stores tied weights (the embedding and the output head) once, and the
    model ties them again when it loads (resumed runs are bit-identical, tested)."""
    target = logging.getLogger("accelerate.utils.other")
    notice = _SharedTensorNotice()
    target.addFilter(notice)
    try:
        yield
    finally:
        target.removeFilter(notice)


def save_checkpoint(
    accelerator, directory: str | Path, step: int, state: dict[str, Any], keep_last: int
) -> Path:
    """Save on every process; the main process finalises, renames and prunes.

    A failed write (disk full, folder gone, any error of the serialisers) removes
    the partial folder, leaves every earlier checkpoint as it was and raises
    :class:`CheckpointError` on every process. Old checkpoints are pruned only
    after the new one is in place.
    """
    directory = Path(directory)
    final = directory / checkpoint_name(step)
    staging = directory / f".tmp-{checkpoint_name(step)}"
    error: Exception | None = None
    if accelerator.is_main_process:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(staging, ignore_errors=True)  # leftovers of a crash
        except OSError as caught:
            error = caught
    accelerator.wait_for_everyone()
    if not any_process_failed(accelerator, error):
        try:
            with tied_weights_notice_silenced():
                accelerator.save_state(str(staging), safe_serialization=True)
        except Exception as caught:  # torch/safetensors raise their own types on a full disk
            error = caught
        accelerator.wait_for_everyone()
        saved = not any_process_failed(accelerator, error)  # collective: every process
        if saved and accelerator.is_main_process:
            try:
                _finalise(staging, final, state)
            except OSError as caught:
                error = caught
    if any_process_failed(accelerator, error):
        reason = describe_write_error(error, directory) if error else "failed on another process"
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        previous = latest_checkpoint(directory)
        kept = (
            f"the last good checkpoint, {previous}, is intact"
            if previous
            else "there is no earlier checkpoint"
        )
        raise CheckpointError(
            f"could not write the checkpoint of step {step} in {directory}: {reason}; {kept}"
        )
    if accelerator.is_main_process:
        for old in list_checkpoints(directory)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, checkpoint: str | Path) -> dict[str, Any]:
    """Restore the accelerate state (weights, optimizer, RNG) and return the trainer
    state (which holds the learning-rate schedule)."""
    state = read_trainer_state(checkpoint)
    accelerator.load_state(str(checkpoint), load_kwargs={"weights_only": True})
    return state


def register_lora_hooks(accelerator) -> None:
    """Save and load only the LoRA adapter of a peft policy, not the frozen base."""
    from peft import PeftModel, set_peft_model_state_dict
    from safetensors.torch import load_file

    def save_hook(models, weights, output_dir):
        for index in reversed(range(len(models))):
            model = accelerator.unwrap_model(models[index])
            if isinstance(model, PeftModel):
                if accelerator.is_main_process:
                    model.save_pretrained(
                        os.path.join(output_dir, "adapter"), safe_serialization=True
                    )
                if weights:
                    weights.pop(index)

    def load_hook(models, input_dir):
        for index in reversed(range(len(models))):
            model = accelerator.unwrap_model(models[index])
            if isinstance(model, PeftModel):
                path = os.path.join(input_dir, "adapter", "adapter_model.safetensors")
                set_peft_model_state_dict(model, load_file(path))
                models.pop(index)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
