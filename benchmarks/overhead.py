"""What APO's algorithm costs on top of a training step.

    python benchmarks/overhead.py                         # CPU, the tiny model's step
    python benchmarks/overhead.py --prompts 16 --group 8 --max-new-tokens 512   # GPU setting

Times, on tensors of one step's size (P x G responses of T tokens): the
shaping (group advantages, difficulty, STCR, DADS weights), and the loss with
and without APO's terms (KL to the reference, weighted per response; the plain
PPO-clip loss is what any GRPO trainer computes anyway). The step time comes
from ``benchmarks/step.py`` run with the same settings (apo only), and the
overhead is printed as a fraction of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(function, repeats: int) -> float:
    """Median seconds of ``function()`` over ``repeats`` calls (after one warm-up)."""
    import torch

    function()
    seconds = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def algorithm_seconds(responses: int, group: int, tokens: int, repeats: int) -> dict[str, float]:
    import torch

    from apo.algorithms import apo_objective, ppo_clip_loss, shape_advantages

    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 2, (responses,), generator=generator).float()
    lengths = torch.randint(1, tokens + 1, (responses,), generator=generator).float()
    logp = (-torch.rand(responses, tokens, generator=generator)).to(device).requires_grad_()
    old, ref = logp.detach() - 0.01, logp.detach() + 0.01
    mask = torch.ones(responses, tokens, dtype=torch.bool, device=device)
    shaped = shape_advantages(rewards, rewards.bool(), lengths, group)
    advantages, weights = shaped.advantages.to(device), shaped.kl_weights.to(device)

    def shaping():
        shape_advantages(rewards, rewards.bool(), lengths, group)

    def plain_loss():
        loss, _ = ppo_clip_loss(logp, old, advantages, mask)
        loss.backward()

    def apo_loss():
        loss, _ = apo_objective(logp, old, ref, mask, advantages, weights, beta=0.04)
        loss.backward()

    return {
        "shaping": timed(shaping, repeats),
        "ppo_clip_loss": timed(plain_loss, repeats),
        "apo_objective": timed(apo_loss, repeats),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "step.json"
        subprocess.run(
            [sys.executable, str(HERE / "step.py"), f"--model={args.model}",
             f"--prompts={args.prompts}", f"--group={args.group}",
             f"--max-new-tokens={args.max_new_tokens}", f"--micro-batch={args.micro_batch}",
             f"--steps={args.steps}", "--frameworks", "apo", "--json", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        step = json.loads(out.read_text())["figures"]["apo"]["seconds_per_step"]
    responses = args.prompts * args.group
    parts = algorithm_seconds(responses, args.group, args.max_new_tokens, args.repeats)
    added = parts["shaping"] + max(parts["apo_objective"] - parts["ppo_clip_loss"], 0.0)
    shape = f"{responses} responses x {args.max_new_tokens} tokens"
    print(f"{shape}; step {step:.3f} s (apo, {args.model})")
    print("| part | seconds | share of the step |")
    print("|---|---|---|")
    for name, seconds in parts.items():
        print(f"| {name} | {seconds:.6f} | {100 * seconds / step:.3f} % |")
    print(f"| APO's additions (shaping + KL terms) | {added:.6f} | {100 * added / step:.3f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
