"""How step time and peak memory grow with the response length and the group size.

    python benchmarks/scaling.py                       # CPU, tiny model: 256..2048 tokens, G 4..16
    python benchmarks/scaling.py --frameworks apo trl  # both, side by side
    python benchmarks/scaling.py --model PATH --prompts 16 --image-size 448  # on a GPU

Each point is a run of ``benchmarks/step.py`` (fixed response lengths, one
untimed step, then ``--steps`` timed ones) in its own process. Prints a table
and saves ``scaling.png`` (step time and peak memory against each variable).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(base: list[str], frameworks: list[str], **setting) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "figures.json"
        options = [f"--{key.replace('_', '-')}={value}" for key, value in setting.items()]
        subprocess.run(
            [sys.executable, str(HERE / "step.py"), *base, *options, "--frameworks", *frameworks,
             "--json", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return json.loads(out.read_text())["figures"]


def plot(results: list[dict], path: Path, frameworks: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(10, 7))
    for column, variable in enumerate(("max_new_tokens", "group")):
        points = [r for r in results if r["varied"] == variable]
        for framework in frameworks:
            x = [p[variable] for p in points]
            axes[0][column].plot(x, [p[framework]["seconds_per_step"] for p in points], "o-")
            axes[1][column].plot(x, [p[framework]["peak_memory_mib"] for p in points], "o-")
        label = "new tokens per response" if variable == "max_new_tokens" else "group size G"
        for row, what in enumerate(("seconds per step", "peak memory (MiB)")):
            axes[row][column].set_xlabel(label)
            axes[row][column].set_ylabel(what)
            axes[row][column].set_xscale("log", base=2)
            axes[row][column].legend(frameworks)
            axes[row][column].grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--length-for-groups", type=int, default=512)
    parser.add_argument("--group-for-lengths", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--frameworks", nargs="+", default=["apo"], choices=["apo", "trl"])
    parser.add_argument(
        "--share-prompts", action="store_true", help="apo: batch.share_prompts (step.py)"
    )
    parser.add_argument("--output", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)

    base = [f"--model={args.model}", f"--prompts={args.prompts}", f"--image-size={args.image_size}",
            f"--steps={args.steps}", "--warmup=1"]  # fmt: skip
    if args.share_prompts:
        base.append("--share-prompts")
    results = []
    for length in args.lengths:
        group = args.group_for_lengths
        figures = measure(base, args.frameworks, max_new_tokens=length, group=group,
                          micro_batch=min(8, args.prompts * group))  # fmt: skip
        results.append(
            {"varied": "max_new_tokens", "max_new_tokens": length, "group": group, **figures}
        )
    for group in args.groups:
        length = args.length_for_groups
        figures = measure(base, args.frameworks, max_new_tokens=length, group=group,
                          micro_batch=min(8, args.prompts * group))  # fmt: skip
        results.append({"varied": "group", "max_new_tokens": length, "group": group, **figures})

    header = (
        "| new tokens | G | "
        + " | ".join(f"{f} s/step | {f} peak MiB" for f in args.frameworks)
        + " |"
    )
    print(f"model {args.model}, {args.prompts} prompts per step, {args.image_size}px images")
    print(header)
    print("|" + "---|" * (2 + 2 * len(args.frameworks)))
    for r in results:
        cells = [
            f"{r[f]['seconds_per_step']:.2f} | {r[f]['peak_memory_mib']:.0f}"
            for f in args.frameworks
        ]
        print(f"| {r['max_new_tokens']} | {r['group']} | " + " | ".join(cells) + " |")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "scaling.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.output / "scaling.png", args.frameworks)
    print(f"plot: {args.output / 'scaling.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
