"""``apo`` with a fault injected at an exact point, for the fault-injection tests.

    APO_FAULT=kill_mid_write:3 python -m tests.reliability.faults train CONFIG

Faults (``STEP``: the checkpoint of that step):
- ``kill_mid_write:STEP``: SIGKILL after the optimizer file is half written;
- ``kill_before_rename:STEP``: SIGKILL with the folder complete but not renamed;
- ``disk_full:STEP``: writing the checkpoint fails with "No space left on device".
"""

import errno
import os
import signal
import sys
from pathlib import Path


def _install(fault: str) -> None:
    import accelerate.checkpointing

    import apo.checkpoint

    kind, step = fault.split(":")
    staging = f".tmp-step-{int(step):08d}"

    def saving_the_target(path) -> bool:
        return Path(path).parent.name == staging or Path(path).name == staging

    if kind in ("kill_mid_write", "disk_full"):
        save = accelerate.checkpointing.save

        def faulty_save(obj, file, *args, **kwargs):
            if saving_the_target(file) and "optimizer" in Path(file).name:
                if kind == "disk_full":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
                save(obj, file, *args, **kwargs)
                size = Path(file).stat().st_size
                os.truncate(file, size // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            return save(obj, file, *args, **kwargs)

        accelerate.checkpointing.save = faulty_save
    elif kind == "kill_before_rename":
        fsync_tree = apo.checkpoint._fsync_tree

        def fsync_then_die(directory):
            fsync_tree(directory)
            if saving_the_target(directory):
                os.kill(os.getpid(), signal.SIGKILL)

        apo.checkpoint._fsync_tree = fsync_then_die
    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    _install(os.environ["APO_FAULT"])
    from apo.cli import main

    sys.exit(main(sys.argv[1:]))
