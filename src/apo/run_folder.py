"""Run folders: one run at a time in each (a lock file), and a mark on the folders
that ``apo demo`` created, so that it never replaces anything else.

The lock is a file ``.apo-lock`` holding the owner's PID, host and command. It is
created atomically (``O_EXCL``), removed when the owner exits the ``with`` block
(normally, on an exception or on a signal that unwinds the stack), and a lock
whose owner is gone (a SIGKILL, a crash of the machine) is taken over with a
warning. Within one process the lock is re-entrant: ``apo demo`` holds it while
the trainer it runs takes it again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_FILE = ".apo-lock"
DEMO_MARK = ".apo-demo"
_FRESH_SECONDS = 5.0  # an unreadable lock this young may still be being written
_held: dict[Path, int] = {}  # folder -> depth, for this process's own locks


class RunFolderBusy(ValueError):
    """Another live process holds the run folder (or it cannot be written)."""


def _owner_alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: we cannot tell, so assume it runs
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _read_owner(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text())
        return owner if isinstance(owner, dict) and "pid" in owner else None
    except (OSError, ValueError):
        return None


def check_writable(folder: str | Path, what: str) -> None:
    """Fail now, with one line naming ``folder`` and ``what`` sets it (a setting or a
    flag), not with a traceback when the first file is written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as error:
        raise ValueError(f"{folder} ({what}) is not writable: {error.strerror or error}") from None


@contextlib.contextmanager
def run_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold ``folder`` for this process while the block runs.

    Raises :class:`RunFolderBusy` (a one-line message naming the folder, the
    owner's PID and command) when a live process holds it.
    """
    folder = Path(folder).resolve()
    if folder in _held:  # re-entrant within one process
        _held[folder] += 1
        try:
            yield folder
        finally:
            if folder in _held:  # the outer hold may have ended first (an unclosed trainer)
                _held[folder] -= 1
        return
    path = folder / LOCK_FILE
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if owner is None:
                try:
                    young = time.time() - path.stat().st_mtime < _FRESH_SECONDS
                except FileNotFoundError:
                    continue  # released meanwhile
                if young:
                    raise RunFolderBusy(f"{folder} is being locked by another apo run") from None
                logger.warning("%s: taking over an unreadable lock file %s", folder, path)
            elif _owner_alive(owner):
                raise RunFolderBusy(
                    f"{folder} is in use by another apo run (pid {owner['pid']} on "
                    f"{owner.get('host')}, `{owner.get('command')}`, since "
                    f"{owner.get('started')}): wait for it to end or stop it, or choose another "
                    f"folder (if that process is gone, delete {path})"
                ) from None
            else:
                logger.warning(
                    "%s: taking over the lock of pid %s (`%s`), which is no longer running",
                    folder,
                    owner["pid"],
                    owner.get("command"),
                )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        except OSError as error:
            raise RunFolderBusy(f"the run folder {folder} is not writable: {error.strerror}") from (
                None
            )
        with os.fdopen(descriptor, "w") as handle:
            json.dump(record, handle)
        break
    _held[folder] = 1
    try:
        yield folder
    finally:
        del _held[folder]
        owner = _read_owner(path)
        if owner is not None and owner.get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def prepare_demo_folder(folder: str | Path, overwrite: bool = False) -> Path:
    """Empty ``folder`` for a new demo run, or refuse.

    A folder that does not exist, is empty, or was created by ``apo demo`` (it
    carries the mark) is emptied and marked; any other folder is left untouched
    and refused, unless ``overwrite``. The run lock (if held) is kept.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output {folder} is a file, not a folder")
    contents = [p for p in folder.iterdir() if p.name != LOCK_FILE] if folder.exists() else []
    if contents and not (folder / DEMO_MARK).is_file() and not overwrite:
        raise ValueError(
            f"--output {folder} holds files that apo demo did not write (e.g. "
            f"{contents[0].name}); apo demo only replaces its own run folders. Choose another "
            "folder, or pass --overwrite to delete its contents"
        )
    try:
        for path in contents:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / DEMO_MARK).write_text("written by apo demo: apo demo may replace this folder\n")
    except OSError as error:
        raise ValueError(f"--output {folder} is not writable: {error.strerror}") from None
    return folder
