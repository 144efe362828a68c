"""Soak test: a long tiny-model run with resident memory logged every step.

    python scripts/soak.py --steps 300            # the long, manual mode
    python scripts/soak.py --steps 40 --json F    # the short mode the test suite runs

Trains ``configs/tiny.yaml`` (with a checkpoint and a sampled evaluation every
``--every`` steps, so every code path of a long run repeats) and prints the
resident memory (``memory/rss_mib``, from ``metrics.jsonl``) after warm-up,
at the end, and the least-squares slope over the steps after warm-up, in MiB
per 100 steps. Memory that stops growing has a slope near zero.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def slope_per_100_steps(steps: list[int], values: list[float]) -> float:
    """Least-squares slope of ``values`` against ``steps``, times 100."""
    return 100 * statistics.linear_regression(steps, values).slope


def soak(steps: int, every: int, warmup: int, output: Path) -> dict[str, float]:
    from apo.config import load_config
    from apo.tracking import read_metrics
    from apo.trainer import Trainer

    data = ROOT / "examples" / "data" / "plain.jsonl"
    config = load_config(
        ROOT / "configs" / "tiny.yaml",
        [
            f"training.max_steps={steps}",
            f"checkpoint.every={every}",
            "checkpoint.keep_last=1",
            f"eval.every={every}",
            f"eval.datasets.plain.data.path={data}",
            "eval.datasets.plain.temperature=1.0",
            f"logging.output_dir={output}",
            "logging.log_every=1000000",
            f"data.path={data}",
        ],
    )
    started = time.perf_counter()
    Trainer(config).train()
    seconds = time.perf_counter() - started
    records = [r for r in read_metrics(output) if "memory/rss_mib" in r]
    after = [r for r in records if r["step"] > warmup]
    if len(after) < 2:
        raise SystemExit(f"--steps must exceed --warmup ({warmup}) by at least 2")
    rss = [r["memory/rss_mib"] for r in after]
    return {
        "steps": steps,
        "seconds": round(seconds, 1),
        "rss_at_warmup_mib": round(rss[0], 1),
        "rss_max_after_warmup_mib": round(max(rss), 1),
        "rss_at_end_mib": round(rss[-1], 1),
        "slope_mib_per_100_steps": round(slope_per_100_steps([r["step"] for r in after], rss), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=10, help="checkpoint and evaluate every N")
    parser.add_argument("--warmup", type=int, default=20, help="steps before memory is compared")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="apo-soak-") as folder:
        figures = soak(args.steps, args.every, args.warmup, Path(folder) / "run")
    for key, value in figures.items():
        print(f"{key:28s} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
