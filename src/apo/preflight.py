"""Checks made before training starts: the inputs exist, the run folder is usable,
and a checkpoint to resume belongs to this run."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from apo.checkpoint import DamagedCheckpoint, clean_staging, list_checkpoints, verify_checkpoint
from apo.config import TrainConfig, portable_config
from apo.data import DataError
from apo.nested import config_changes
from apo.rewards import RewardRunner
from apo.run_folder import check_writable, run_lock

logger = logging.getLogger(__name__)

# Settings a checkpoint cannot be resumed under, and settings expected to change on resume.
INCOMPATIBLE = ("model.name_or_path", "lora.")
EXPECTED = ("logging.", "checkpoint.", "training.max_steps", "training.episodes")


def check_inputs_exist(config: TrainConfig, resume: str | bool | None) -> None:
    """Data files, reward references and a writable run folder that holds no earlier
    run (unless resumed, or logging.overwrite), before anything loads."""
    data_configs = [config.data, *(s.data for s in config.eval.datasets.values())]
    for data in data_configs:
        for path in [data.path] if isinstance(data.path, str) else (data.path or []):
            if not Path(path).exists():
                raise DataError(str(path), "no such file or folder", reason="missing_file")
    RewardRunner.check_references(config.rewards)
    run_dir = Path(config.logging.output_dir)
    check_writable(run_dir, "logging.output_dir")
    check_trackers(config)
    earlier = earlier_run_files(run_dir)
    if not resume and earlier and not config.logging.overwrite:
        # A fresh run would replace them (and mix its checkpoints with theirs, so that
        # --resume could pick one of theirs).
        raise ValueError(
            f"{run_dir} (logging.output_dir) holds an earlier run ({', '.join(earlier)}), "
            "which a fresh run would replace: continue that run with --resume, choose "
            "another folder (--output DIR), or pass --overwrite (logging.overwrite=true) to "
            "delete those files and start afresh"
        )


# What apo train writes into its run folder: an earlier run's, if a fresh run finds them.
RUN_FILES = (
    "config.yaml",
    "metrics.jsonl",
    "samples.jsonl",
    "evals.jsonl",
    "checkpoints",
    "final_model",
    "tensorboard",
)


def earlier_run_files(run_dir: Path) -> list[str]:
    """What an earlier ``apo train`` run wrote into ``run_dir`` (:data:`RUN_FILES`,
    folders with a slash). An empty folder does not count, nor checkpoints/ holding only
    unfinished writes (``.tmp-step-N``, which the next start removes)."""
    found = []
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            if any(not entry.name.startswith(".tmp-step-") for entry in path.iterdir()):
                found.append(f"{name}/")
        elif path.exists():
            found.append(name)
    return found


def claim_run_folder(run_dir: Path, overwrite: bool = False) -> contextlib.ExitStack:
    """Take the run folder's lock (held until the returned stack is closed) and remove
    what an interrupted checkpoint write left in it; ``overwrite`` (a fresh run with
    logging.overwrite): also what an earlier run wrote there (:func:`earlier_run_files`;
    other files stay), now that no other run can be using it."""
    stack = contextlib.ExitStack()
    stack.enter_context(run_lock(run_dir, "apo train"))
    try:
        if overwrite:
            earlier = earlier_run_files(run_dir)
            for name in earlier:
                path = run_dir / name.rstrip("/")
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            if earlier:
                logger.warning(
                    "--overwrite: deleted the earlier run's %s in %s", ", ".join(earlier), run_dir
                )
        removed = clean_staging(run_dir / "checkpoints")
    except BaseException:
        stack.close()
        raise
    if removed:
        logger.warning("removed unfinished checkpoint folders: %s", ", ".join(removed))
    return stack


def resume_point(
    run_dir: Path, resume: str | bool | None, processes: int, warn: bool
) -> Path | None:
    """The checkpoint to resume, checked file by file before anything loads.

    ``resume``: None (a fresh run), True (the latest intact checkpoint of the run
    folder; a damaged one is skipped with a warning) or a checkpoint path (used only
    if intact). None is returned when there is nothing to resume.
    """
    if not resume:
        return None
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    if resume is not True:
        path = Path(resume)
        try:
            verify_checkpoint(path, processes)
        except DamagedCheckpoint as error:
            older = [c for c in checkpoints if c.resolve() != path.resolve()]
            advice = (
                f"resume from the previous one with --resume {older[-1]}, or with --resume "
                "alone (the latest intact checkpoint)"
                if older
                else "no other checkpoint of this run is there to resume from"
            )
            raise ValueError(f"checkpoint {path} is damaged: {error}; {advice}") from None
        return path
    damaged = []
    for path in reversed(checkpoints):
        try:
            verify_checkpoint(path, processes)
        except DamagedCheckpoint as error:
            damaged.append(str(error))
            if warn:
                logger.warning("skipping the damaged checkpoint %s: %s", path, error)
            continue
        return path
    if damaged:
        raise ValueError(
            f"no intact checkpoint is left to resume in {run_dir / 'checkpoints'}: "
            + "; ".join(damaged)
        )
    if warn:
        logger.warning("no checkpoint in %s: starting from scratch", run_dir / "checkpoints")
    return None


def check_trackers(config: TrainConfig) -> None:
    """An enabled tracker whose package is missing is an error now, not after the
    model has loaded."""
    wanted = {"tensorboard": config.logging.tensorboard, "wandb": config.logging.wandb}
    for package, enabled in wanted.items():
        if enabled and importlib.util.find_spec(package) is None:
            raise ValueError(
                f"logging.{package} is on but {package} is not installed: "
                "pip install 'apo-rl[tracking]', or set "
                f"logging.{package}=false"
            )


def check_resumable(path: Path, saved: dict[str, Any], config: TrainConfig, warn: bool) -> None:
    """Refuse a checkpoint of another model or adapter; name every other setting
    that changed since it was saved (changing some, like the learning rate, is fine)."""
    # Each side as its run folder's config.yaml holds it: a file inside the run folder
    # by its place there (the folder may have moved), the shipped model by its name (the
    # checkpoint may come from another environment).
    changes = [
        (key, old, new)
        for key, old, new in config_changes(
            portable_config(saved), portable_config(config.model_dump(mode="json"))
        )
        if not (_same_file(old, new) or _moved_with_the_run(old, new))
    ]
    described = {key: f"{key}: {old!r} -> {new!r}" for key, old, new in changes}
    fatal = [text for key, text in described.items() if key.startswith(INCOMPATIBLE)]
    if fatal:
        raise ValueError(f"checkpoint {path} belongs to another model: " + "; ".join(fatal))
    changed = [text for key, text in described.items() if not key.startswith(EXPECTED)]
    if changed and warn:
        logger.warning("resuming %s with changed settings: %s", path, "; ".join(changed))


def _moved_with_the_run(old: Any, new: Any) -> bool:
    """A file of the run folder, saved by its absolute place before the folder moved
    (its path then was relative to another working folder): gone from there, and at
    the same place in the run folder now."""
    if not (isinstance(old, str) and isinstance(new, str)) or Path(new).is_absolute():
        return False
    inside = Path(new).parts
    return not os.path.exists(old) and Path(old).parts[-len(inside) :] == inside


def _same_file(old: Any, new: Any) -> bool:
    """Two spellings of one existing file or folder: a path saved relative to the current
    folder by an older version, now resolved relative to the config file."""
    try:
        return isinstance(old, str) and isinstance(new, str) and os.path.samefile(old, new)
    except OSError:  # either is missing
        return False
