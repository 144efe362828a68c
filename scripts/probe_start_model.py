"""What the shipped demo start model can do: greedy accuracy, pass@1 and pass@k of
sampled answers, exact enumerations and enumeration/answer agreement, on the
held-out reasoning questions of ``apo demo`` (the same split per seed).

    python scripts/probe_start_model.py [--seeds 0 1 2] [--samples 8]

Prints one line per seed and the mean: the figures of docs/RESULTS.md's start
model section. About a minute per seed on 2 CPU cores.
"""

import argparse
import json
import statistics
import time

import torch

from apo.demo.settings import DemoSettings, start_model_path, task_splits
from apo.demo.warmup import probe
from apo.models import ModelConfig, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()
    loaded = load_model(ModelConfig(name_or_path=str(start_model_path())))
    results = []
    for seed in args.seeds:
        rows = task_splits(DemoSettings(seed=seed))["reasoning"]
        started = time.perf_counter()
        with torch.no_grad():
            found = probe(loaded.model, loaded.processor, rows, samples=args.samples, seed=seed)
        found["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps({"seed": seed, "questions": len(rows), **found}))
        results.append(found)
    means = {key: statistics.fmean(r[key] for r in results) for key in results[0]}
    print(json.dumps({"mean": {key: round(value, 4) for key, value in means.items()}}))


if __name__ == "__main__":
    main()
