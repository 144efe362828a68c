"""Build the demo's start checkpoint: the tiny model after a short supervised warm-up.

    python scripts/build_demo_start.py [--output src/apo/demo/start_model]

Deterministic for a given machine and library versions (seeded data, order and
initialisation; CPU). Takes a few minutes on 2 cores. The result ships with the
package (about 3 MB), so `apo demo` never has to build it.
"""

import argparse
from pathlib import Path

import torch

from apo.demo.warmup import warm_up

WARMUP = {"steps": 900, "batch_size": 32, "lr": 3e-3, "seed": 0, "train_size": 4000}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = Path(__file__).resolve().parents[1] / "src" / "apo" / "demo" / "start_model"
    parser.add_argument("--output", default=str(default))
    args = parser.parse_args()
    torch.set_num_threads(2)
    path = warm_up(args.output, **WARMUP)
    print(f"start checkpoint written to {path}")
