"""``python -m apo`` is the ``apo`` command."""

import sys

from apo.cli import main

sys.exit(main())
