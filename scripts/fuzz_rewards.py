"""Fuzz the reward functions called directly, and report the slowest inputs found.

    python scripts/fuzz_rewards.py --seconds 120 --seed 0 --top 15

Generates LaTeX-shaped answers (logarithms and powers of numbers, towers,
factorials, roots, quotients by polynomials, trigonometric functions, sets,
equations, long runs of one character) from a seeded random generator, and
times ``answers_match(answer, truth)`` and ``accuracy_reward(response, truth)``
on each, as a user's script or a TRL reward function would call them: in one
process, warm, with no worker pool to kill them. The calls run in a child
process; one that takes longer than ``--limit`` seconds is reported as a hang
and the child is replaced, so a hang is reported rather than waited for. The
slowest calls are printed, by CPU time of the child (the wall-clock time, which
other work on the machine stretches, next to it).

Exit status 1 when a call took over ``--budget`` seconds of CPU (the suite's
budget, tests/rewards/test_bounds.py), hung or raised (GroundTruthError, which an
unreadable random ground truth raises by design, aside), 0 otherwise.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import sys
import time
from dataclasses import dataclass

RISKY = [*"{}()[] \t\n0123456789\\$^_!,.-+=%|:;<>/aeAZ°", "<answer>", "<think>", "answer "]
SYMBOLS = ["x", "y", "n", "a", "e", "i", "\\pi", "\\theta"]
TRUTHS = ["3", "\\frac{1}{2}", "x^2+1", "[1,3)", "y=2x+1", "x=5", "\\sqrt{8}", "B", "12", "\\ln 2"]
TRUTHS += ["\\frac{1}{x-1}", "2^{10}", "e^{2}", "\\log(x)", "\\{1, 2\\}", "0.5", "\\sin x"]


def number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        return str(rng.randint(0, 12))
    if kind < 0.7:
        return str(rng.randint(13, 10 ** rng.randint(2, 12)))
    if kind < 0.85:
        return f"{rng.randint(0, 1000)}.{rng.randint(0, 99)}"
    return "9" * rng.randint(20, 400)


def expression(rng: random.Random, depth: int = 0) -> str:
    """A random LaTeX expression, at most ``depth`` levels of structure deep (5)."""
    if depth >= 5 or rng.random() < 0.25:
        return number(rng) if rng.random() < 0.5 else rng.choice(SYMBOLS)

    def sub() -> str:
        return expression(rng, depth + 1)

    forms = [
        lambda: f"{sub()}+{sub()}",
        lambda: f"{sub()}-{sub()}",
        lambda: f"{sub()}{sub()}",
        lambda: f"{sub()} \\cdot {sub()}",
        lambda: f"\\frac{{{sub()}}}{{{sub()}}}",
        lambda: f"{sub()}^{{{sub()}}}",
        lambda: f"({sub()})^{{{sub()}}}",
        lambda: f"e^{{{sub()}}}",
        lambda: f"\\sqrt{{{sub()}}}",
        lambda: f"\\sqrt[{rng.randint(2, 9)}]{{{sub()}}}",
        lambda: f"\\ln {sub()}",
        lambda: f"\\ln({sub()})",
        lambda: f"\\log({sub()})",
        lambda: f"\\log_{{{rng.choice(['2', '3', '10', 'x'])}}}({sub()})",
        lambda: f"{sub()}\\ln {sub()}",
        lambda: f"({sub()})!",
        lambda: f"{rng.randint(0, 30)}!",
        lambda: f"\\{rng.choice(['sin', 'cos', 'tan', 'sinh', 'cosh'])}({sub()})",
        lambda: f"\\cos^{{{sub()}}}({sub()})",
        lambda: f"|{sub()}|",
        lambda: f"\\lfloor {sub()} \\rfloor",
        lambda: f"\\frac{{{sub()}}}{{x^{{{rng.randint(2, 60)}}}-1}}",
        lambda: f"x_{{{sub()}}}",
        lambda: f"\\left({sub()}, {sub()}\\right)",
        lambda: f"\\{{{sub()}, {sub()}\\}}",
    ]
    return rng.choice(forms)()


def answer(rng: random.Random) -> str:
    """An answer: an expression, an equation, a run of one character, or a mutation."""
    kind = rng.random()
    if kind < 0.6:
        return expression(rng)
    if kind < 0.7:
        return f"{expression(rng)}={expression(rng)}"
    if kind < 0.85:
        unit = rng.choice(RISKY)
        run = unit * (rng.randint(1, 30_000) // len(unit))
        return rng.choice(["", "x", "\\ln ", "$", "answer is "]) + run + rng.choice(["", "x", "}"])
    text = list(expression(rng))
    for _ in range(rng.randint(1, 8)):  # damage it: insert runs of risky characters
        position = rng.randint(0, len(text))
        text[position:position] = [rng.choice(RISKY)] * rng.randint(1, 50)
    return "".join(text)


def worker(connection) -> None:
    """Runs calls sent over ``connection``, replying (cpu seconds, wall seconds, result)."""
    limit = 4 * 1024**3  # a call that fills memory fails here, not the machine
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    from apo.rewards.accuracy import GroundTruthError, accuracy_reward, answers_match, warm_up

    warm_up()
    functions = {"answers_match": answers_match, "accuracy_reward": accuracy_reward}
    connection.send("ready")
    while True:
        name, arguments = connection.recv()
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            result = repr(functions[name](*arguments))
        except GroundTruthError:  # a random ground truth may be unreadable: a data error
            result = "GroundTruthError"
        except Exception as error:
            result = f"raised {type(error).__name__}: {str(error)[:80]}"
        connection.send((time.process_time() - cpu, time.perf_counter() - wall, result))


class Child:
    """The child process that makes the calls, replaced when one of them hangs."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child_end = context.Pipe()
        self.process = context.Process(target=worker, args=(child_end,), daemon=True)
        self.process.start()
        if not self.connection.poll(300) or self.connection.recv() != "ready":
            raise RuntimeError("the fuzzing child did not start within 300 s")

    def call(self, name: str, arguments: tuple, limit: float) -> tuple[float, float, str]:
        self.connection.send((name, arguments))
        if self.connection.poll(limit):
            return self.connection.recv()
        self.process.kill()  # our own child, by its handle
        self.process.join()
        self.start()
        return limit, limit, "HANG (killed)"

    def close(self) -> None:
        self.process.kill()
        self.process.join()


@dataclass
class Call:
    cpu: float
    wall: float
    name: str
    answer: str
    truth: str
    result: str


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="time to fuzz for")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random generator")
    parser.add_argument("--top", type=int, default=15, help="how many of the slowest to print")
    parser.add_argument("--limit", type=float, default=20.0, help="seconds before a hang")
    parser.add_argument("--budget", type=float, default=1.0, help="CPU seconds a call may take")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    child = Child()
    calls: list[Call] = []
    end = time.monotonic() + args.seconds
    try:
        while time.monotonic() < end:
            text = answer(rng)
            truth = rng.choice(TRUTHS) if rng.random() < 0.7 else expression(rng)
            response = f"<think>t</think><answer>{text}</answer>"
            for name, arguments in (
                ("answers_match", (text, truth)),
                ("accuracy_reward", (response, truth)),
            ):
                cpu, wall, result = child.call(name, arguments, args.limit)
                calls.append(Call(cpu, wall, name, text, truth, result))
    finally:
        child.close()

    calls.sort(key=lambda call: call.cpu, reverse=True)
    over = [c for c in calls if c.cpu > args.budget or c.result.startswith(("raised", "HANG"))]
    print(f"{len(calls)} calls in {args.seconds:.0f} s (seed {args.seed}); ", end="")
    print(f"{len(over)} over {args.budget:g} s of CPU, hung or raised")
    print(f"slowest {args.top}:    cpu s   wall s  call")
    for call in calls[: args.top] + [c for c in over if c not in calls[: args.top]]:
        print(described(call))
    return 1 if over else 0


def described(call: Call) -> str:
    more = len(call.answer) - 70
    shown = repr(call.answer[:70]) + (f" (and {more} more characters)" if more > 0 else "")
    arguments = f"{shown}, {call.truth[:40]!r}"
    return f"  {call.cpu:8.3f} {call.wall:8.3f}  {call.name}({arguments}) -> {call.result}"


if __name__ == "__main__":
    sys.exit(main())
