"""Build the demo's start checkpoint: a tiny Qwen2.5-VL warmed up on a noisy teacher.

    python scripts/build_demo_start.py [--output src/apo/demo/start_model]

The model (3.4 M parameters: hidden 256, 4 text layers, 2 vision blocks) is
fine-tuned on demonstrations whose enumeration of the scene is always right
but whose final answer is a near miss 60 % of the time, a quarter of those
after re-enumerating and hesitating (see ``apo.demo.warmup``). It prints
greedy accuracy, pass@1, pass@8, exact enumerations and enumeration/answer
agreement on held-out probes as it goes.

Deterministic for a given machine, thread count and library versions (seeded
data, order and initialisation; CPU, one thread). About 25 minutes. The result
ships with the package (14 MB), so `apo demo` never has to build it.
"""

import argparse
from pathlib import Path

import torch

from apo.data.synthetic import NoisyTeacher
from apo.demo.warmup import ModelSize, warm_up

SIZE = ModelSize(hidden=256, layers=4, vision_hidden=128, vision_depth=2)
TEACHER = NoisyTeacher(correct=0.4, overthink=0.25)
# The one-cycle schedule is laid out over 3,000 steps and training stops after
# 1,000, still at a high learning rate: by then the probes list held-out scenes
# exactly (perception) while the answers still follow the teacher's noise, which
# is the start the demo needs, in a third of the time.
WARMUP = {
    "steps": 1000,
    "schedule_steps": 3000,
    "batch_size": 32,
    "lr": 1e-3,
    "seed": 0,
    "train_size": 4000,
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = Path(__file__).resolve().parents[1] / "src" / "apo" / "demo" / "start_model"
    parser.add_argument("--output", default=str(default))
    parser.add_argument("--log-every", type=int, default=250)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the shipped checkpoint was built on one thread
    path = warm_up(args.output, size=SIZE, teacher=TEACHER, log_every=args.log_every, **WARMUP)
    print(f"start checkpoint written to {path}")
