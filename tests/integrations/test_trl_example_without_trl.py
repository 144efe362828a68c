"""``examples/trl_apo.py`` where TRL is not installed: one line naming the extra, exit 2."""

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trl_apo.py"

# Runs the example as ``python examples/trl_apo.py --tiny`` would, with ``import trl``
# failing as it does where TRL is not installed (ModuleNotFoundError, name "trl").
WITHOUT_TRL = (
    "import runpy, sys; sys.modules['trl'] = None; sys.argv = [sys.argv[1], '--tiny']; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def test_the_trl_example_without_trl_names_the_extra_to_install():
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TRL, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr == "trl_apo.py: error: TRL is not installed: pip install 'apo-rl[trl]'\n"
    assert result.stdout == ""
