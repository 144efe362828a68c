"""The ``apo`` command line.

Each command imports the modules it runs (torch, the trainer, the models) when
it runs: the reward and judge worker processes re-import the main module
(forkserver), and ``apo --help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from apo import __version__
from apo.algorithms.config import SHAPING_FIELDS, AlgorithmConfig
from apo.algorithms.names import IMPORTANCE_MODES
from apo.checkpoint import CheckpointError
from apo.demo.compare import PAPER_VARIANTS, VARIANTS, run_compare
from apo.demo.report import DemoResult, changes_summary, table_rows
from apo.evaluation.config import BENCHMARK_NAMES
from apo.evaluation.report import (
    comparability_warning,
    compare_table,
    load_summary,
    markdown_summary,
)
from apo.run_folder import check_writable

# A group of 8 answers to one prompt, as in the paper (G = 8): accuracy in {0, 1}
# plus 0.5 for a well-formed <think>/<answer> response. Three are correct; one
# wrong answer rambles for 1,900 tokens, one is wrong but short.
EXAMPLE_REWARDS = "1.5,1.5,1.0,0.5,0.5,0.0,0.5,0.5"
EXAMPLE_CORRECT = "1,1,1,0,0,0,0,0"
EXAMPLE_LENGTHS = "310,402,288,1900,350,95,640,333"


def _numbers(text: str) -> list[float]:
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers (or space-separated), got {text!r}"
        ) from None


def _add_advantages_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "advantages",
        help="show how GRPO and APO score one or more groups of responses",
        description=(
            "Compute GRPO advantages, the STCR length penalty and the DADS KL weights "
            "for groups of responses, side by side. Without arguments it uses a "
            "built-in example group of 8. Numbers are comma- or space-separated: "
            "--rewards 1,0,1,0 or --rewards 1 0 1 0."
        ),
    )
    per_response = {"type": _numbers, "nargs": "+", "default": None}
    parser.add_argument(
        "--rewards",
        **per_response,
        help=f"total reward per response (default: the example, {EXAMPLE_REWARDS})",
    )
    parser.add_argument(
        "--correct",
        **per_response,
        help="1 if the accuracy part of the reward is 1, else 0 (default: reward >= 1)",
    )
    parser.add_argument(
        "--lengths",
        **per_response,
        help="generated tokens per response (default: all the same, so STCR changes nothing)",
    )
    parser.add_argument(
        "--group-size", type=int, default=None, help="G (default: all responses form one group)"
    )
    for name in SHAPING_FIELDS:
        _add_field_flag(parser, AlgorithmConfig, name)
    parser.set_defaults(handler=_run_advantages)


def _add_field_flag(parser: argparse.ArgumentParser, section: type[BaseModel], name: str) -> None:
    """``--name-with-dashes`` for the field ``name`` of a settings section: its type,
    default and description are the field's, so the flag follows the config."""
    field = section.model_fields[name]
    flag = "--" + name.replace("_", "-")
    # "%" would start an argparse format specifier in the help
    described = (field.description or "").replace("%", "%%")
    if field.annotation is bool:
        action = argparse.BooleanOptionalAction if field.default else "store_true"
        default = "on" if field.default else "off"
        options = {"action": action}
    elif field.annotation in (int, float, str):
        default, options = field.default, {"type": field.annotation}
    else:
        raise TypeError(f"{section.__name__}.{name}: no flag for a {field.annotation} field")
    parser.add_argument(
        flag, dest=name, default=field.default, help=f"{described} (default: {default})", **options
    )


def _flat(values: list[list[float]] | None) -> list[float] | None:
    """``--rewards 1,0 1`` arrives as [[1, 0], [1]]: one list."""
    return None if values is None else [number for part in values for number in part]


def advantage_inputs(
    rewards: list[float] | None, correct: list[float] | None, lengths: list[float] | None
) -> tuple[list[float], list[float], list[float], list[str]]:
    """Rewards, correctness and lengths of ``apo advantages``, with notes on what was
    assumed: the built-in example without ``--rewards``; with it, correctness
    ``reward >= 1`` (apo's reward: accuracy 1 plus 0.5 for the format) and equal lengths."""
    if rewards is None:
        if correct is not None or lengths is not None:
            raise ValueError(
                "--correct and --lengths describe the responses of --rewards: pass all "
                "three, e.g. apo advantages --rewards 1 0 1 0 --correct 1 0 1 0 "
                "--lengths 300 900 280 350"
            )
        return _numbers(EXAMPLE_REWARDS), _numbers(EXAMPLE_CORRECT), _numbers(EXAMPLE_LENGTHS), []
    notes = []
    if correct is None:
        correct = [1.0 if reward >= 1 else 0.0 for reward in rewards]
        notes.append("--correct not given: a response is correct where its reward is >= 1.")
    if lengths is None:
        lengths = [100.0] * len(rewards)
        notes.append(
            "--lengths not given: all responses are 100 tokens, so STCR changes nothing "
            "(pass --lengths, one per response, to see it)."
        )
    return rewards, correct, lengths, notes


def _run_advantages(args: argparse.Namespace) -> None:
    import torch

    from apo.algorithms import shape_advantages

    given = advantage_inputs(_flat(args.rewards), _flat(args.correct), _flat(args.lengths))
    rewards, correct, lengths = (torch.tensor(values) for values in given[:3])
    notes = given[3]
    group_size = rewards.numel() if args.group_size is None else args.group_size
    # APO: DADS and STCR on; GRPO: the same settings with both off
    config = AlgorithmConfig(**{name: getattr(args, name) for name in SHAPING_FIELDS})
    grpo = shape_advantages(rewards, correct, lengths, group_size, config, dads=False, stcr=False)
    apo = shape_advantages(rewards, correct, lengths, group_size, config)

    table = Table(
        title=f"GRPO vs APO: {rewards.numel() // group_size} group(s) of {group_size}",
        caption="d: difficulty, A: advantage, w: STCR weight, f: DADS KL weight",
    )
    for column in ("#", "reward", "ok", "len", "d", "A grpo", "w stcr", "A apo", "f dads"):
        table.add_column(column, justify="right", no_wrap=True)
    for i in range(rewards.numel()):
        table.add_row(
            str(i),
            f"{rewards[i]:.2f}",
            "yes" if correct[i] else "no",
            f"{lengths[i]:.0f}",
            f"{apo.difficulty[i]:.3f}",
            f"{grpo.advantages[i]:+.4f}",
            f"{apo.stcr_weights[i]:.5f}",
            f"{apo.advantages[i]:+.4f}",
            f"{apo.kl_weights[i]:.4f}",
        )
    console = print_table(table)
    console.print(
        "STCR: wrong answers longer than the group's correct ones get A * (1 + w).  "
        "DADS: positive samples of harder prompts get a smaller KL weight."
    )
    for note in notes:
        print(note)


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model with APO or GRPO from a YAML config",
        description=(
            "Train with APO (or GRPO) from a YAML config, with dotted overrides such as "
            "algorithm.beta=0.001 rollout.group_size=8. Every option is listed by "
            "`apo train --reference` (also in configs/reference.yaml). Launch on several "
            "processes or nodes with `accelerate launch -m apo.cli train ...` or torchrun."
        ),
    )
    parser.add_argument("config", nargs="?", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides (values are YAML)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help=(
            "resume from the latest intact checkpoint of the run folder, or from CHECKPOINT "
            "(a key=value right after --resume is an override, not a checkpoint)"
        ),
    )
    parser.add_argument("--output", help="run folder (overrides logging.output_dir)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=(
            "start afresh in a run folder that holds an earlier run (its config.yaml, "
            "metrics.jsonl, samples.jsonl, evals.jsonl, checkpoints/, final_model/ are deleted; "
            "other files are kept); without it such a folder is refused (logging.overwrite)"
        ),
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    parser.add_argument(
        "--reference", action="store_true", help="print every option with its help and exit"
    )
    parser.set_defaults(handler=_run_train)


def _overrides(args: argparse.Namespace) -> list[str]:
    """The command's overrides; a config argument holding ``=`` is the first of them
    (``apo train key=value ...``: no config file), and ``args.config`` becomes None."""
    overrides = list(args.overrides)
    if args.config is not None and "=" in args.config:
        overrides.insert(0, args.config)
        args.config = None
    return overrides


def _run_train(args: argparse.Namespace) -> int:
    from apo.config import config_to_yaml, load_config, reference_yaml

    if args.reference:
        print(reference_yaml(), end="")
        return 0
    overrides = _overrides(args)
    if isinstance(args.resume, str) and "=" in args.resume and not Path(args.resume).exists():
        # `--resume key=value`: argparse took the override for the checkpoint
        overrides.append(args.resume)
        args.resume = True
    if args.output:
        overrides.append(f"logging.output_dir={args.output}")
    if args.overwrite:
        overrides.append("logging.overwrite=true")
    config = load_config(args.config, overrides)
    if args.print_config:
        print(config_to_yaml(config, run_folder=False), end="")
        return 0
    logging.getLogger("apo").setLevel(logging.INFO)  # "resumed from ...", removed leftovers
    _quiet_model_loading()
    from apo.agreement import AgreedFailure
    from apo.checkpoint import CheckpointError, latest_checkpoint
    from apo.out_of_memory import OutOfMemory
    from apo.trainer import StopTraining, Trainer, TrainingFailure

    trainer = Trainer(config, resume=args.resume)
    try:
        exported = trainer.train()
    except StopTraining as stop:
        checkpoints = Path(config.logging.output_dir) / "checkpoints"
        if stop.saved:
            print(f"stopped by a signal; checkpoint saved in {checkpoints}")
        else:
            last = latest_checkpoint(checkpoints)
            print(
                "stopped at once by a second signal, without saving this step; "
                + (f"resume from {last} with --resume" if last else "no checkpoint was written")
            )
        return int(stop.code)
    except (TrainingFailure, AgreedFailure, OutOfMemory, CheckpointError) as error:
        if trainer.is_main:  # every process raises the same error: one message
            print(f"apo train: error: {error}", file=sys.stderr)
            last = latest_checkpoint(Path(config.logging.output_dir) / "checkpoints")
            print(f"resume from {last} with --resume" if last else "no checkpoint was written")
        return 3
    if exported is not None and trainer.is_main:
        print(f"trained model: {exported}")
    return 0


def _add_estimate_memory_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "estimate-memory",
        help="predict the GPU memory of a training config before launching it",
        description=(
            "Predict the GPU memory per process of `apo train CONFIG [overrides]`, phase by "
            "phase (generation, log-prob passes, update), from the model's config alone (read "
            "offline, nothing downloaded, no weights loaded), at the worst-case lengths of the "
            "config. DDP: every process holds everything. The formulas are in apo.estimate."
        ),
    )
    parser.add_argument("config", nargs="?", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides (values are YAML)")
    parser.add_argument(
        "--gpu-memory", type=float, default=80.0, metavar="GIB", help="memory of one GPU (80)"
    )
    parser.add_argument("--processes", type=int, default=1, help="DDP processes (default 1)")
    parser.add_argument(
        "--prompt-tokens", type=int, help="longest prompt (default: data.max_prompt_length)"
    )
    parser.add_argument(
        "--image-tokens",
        type=int,
        help="image tokens of a prompt (default: the whole prompt, the worst case)",
    )
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.set_defaults(handler=_run_estimate_memory)


def _run_estimate_memory(args: argparse.Namespace) -> int:
    import json

    from apo.config import ConfigError, load_config
    from apo.estimate import GIB, estimate_memory, model_shape

    if args.processes < 1:
        raise ValueError("--processes must be at least 1")
    overrides = _overrides(args)
    try:
        config = load_config(args.config, overrides)
    except ConfigError as error:
        if "data.path is not set" not in str(error):
            raise
        # The estimate reads no data: a config waiting for its data path is fine.
        config = load_config(args.config, [*overrides, "data.path=(not read)"])
    _quiet_model_loading()
    # Libraries imported while the model's shape is read may print to stdout (DeepSpeed
    # announces its accelerator there): stdout carries the estimate only.
    with contextlib.redirect_stdout(sys.stderr):
        estimate = estimate_memory(
            config,
            model_shape(config),
            processes=args.processes,
            prompt_tokens=args.prompt_tokens,
            image_tokens=args.image_tokens,
        )
    peak = estimate.peak_bytes / GIB
    if args.json:
        print(json.dumps(estimate.to_dict() | {"gpu_memory_gib": args.gpu_memory}, indent=2))
    else:
        table = Table(
            title=f"GPU memory per process of {config.model.name_or_path} (GiB)",
            caption="; ".join(estimate.notes),
        )
        table.add_column("component", no_wrap=True)
        for phase in estimate.phases:
            table.add_column(phase, justify="right")
        for name in estimate.components:
            cells = [
                f"{estimate.components[name] / GIB:.2f}" if name in held else ""
                for held in estimate.phases.values()
            ]
            if any(cells):
                table.add_row(name, *cells)
        table.add_row("total", *(f"{estimate.phase_bytes(p) / GIB:.2f}" for p in estimate.phases))
        console = print_table(table)
        for name, value in estimate.alternatives.items():
            console.print(f"({name}: {value / GIB:.2f} GiB)")
        console.print(f"peak: {peak:.2f} GiB in {estimate.peak_phase}")
    if peak > args.gpu_memory:
        print(
            f"warning: the peak ({peak:.1f} GiB, {estimate.peak_phase}) exceeds "
            f"--gpu-memory {args.gpu_memory:g} GiB: lower the largest components above "
            "(rollout.max_batch_size for the KV cache, batch.micro_batch_size or "
            "model.gradient_checkpointing for activations, lora.enabled for optimizer states)",
            file=sys.stderr,
        )
    return 0


def _add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="watch a tiny VLM learn to reason with APO, on CPU, offline, in minutes",
        description=(
            "Evaluate the warmed-up tiny model on a synthetic visual reasoning task, train it "
            "with APO (or GRPO), evaluate again, and write metrics, plots and report.md."
        ),
    )
    parser.add_argument("--output", default="runs/demo", help="run folder (default: runs/demo)")
    parser.add_argument("--algorithm", choices=["apo", "grpo"], default="apo")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: 25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few seconds' smoke run")
    parser.add_argument(
        "--beta",
        type=float,
        default=None,
        help="KL coefficient (default: 0.04, see docs/RESULTS.md)",
    )
    parser.add_argument(
        "--stcr-base",
        type=float,
        default=None,
        help="STCR base (default: 2^(1/24), sized to the demo's answer lengths; see "
        "docs/ALGORITHM.md)",
    )
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=None,
        help="sampled answers per held-out question, for pass@1 and pass@k (default: 4)",
    )
    parser.add_argument(
        "--share-prompts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run each prompt once per micro-batch for its group (batch.share_prompts; "
        "default: on): the same maths up to float rounding (docs/PERFORMANCE.md)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the contents of --output even if apo demo did not write them",
    )
    parser.add_argument("--dads", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--stcr", choices=["on", "off"], help=argparse.SUPPRESS)
    # apo compare's variants beyond GRPO
    parser.add_argument("--dynamic-sampling", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overlong-buffer", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--overlong-filter", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--importance-sampling",
        choices=IMPORTANCE_MODES,
        default="off",
        help=argparse.SUPPRESS,
    )
    # apo compare: reuse the start evaluation of the seed's first variant
    parser.add_argument("--start-eval-from", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_run_demo)


def _flag(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def _run_demo(args: argparse.Namespace) -> int:
    from apo.demo.run import run_demo
    from apo.demo.settings import DemoSettings

    _quiet_model_loading()
    settings = DemoSettings(
        output_dir=args.output,
        algorithm=args.algorithm,
        dads=_flag(args.dads),
        stcr=_flag(args.stcr),
        seed=args.seed,
        share_prompts=args.share_prompts,
        quick=args.quick,
        start_eval_from=args.start_eval_from,
        dynamic_sampling=args.dynamic_sampling,
        overlong_buffer=args.overlong_buffer,
        overlong_filter=args.overlong_filter,
        importance_sampling=args.importance_sampling,
    )
    for name in ("steps", "beta", "stcr_base", "eval_samples"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    result = run_demo(settings, overwrite=args.overwrite)
    print_demo_result(result, f"{args.algorithm.upper()} on the synthetic task (seed {args.seed})")
    return 0


def print_demo_result(result: DemoResult, title: str) -> None:
    """The before/after table, the changes beyond their noise band and where the report is."""
    table = Table(title=title)
    table.add_column("", no_wrap=True)
    for column in ("before", "after", "change", "noise (2 SE)"):
        table.add_column(column, justify="right", no_wrap=True)
    for cells in table_rows(result):
        table.add_row(*cells)
    console = print_table(table)
    console.print(changes_summary(result))
    console.print(f"report: {result.report}  ({result.seconds / 60:.1f} min)")


def print_table(table: Table) -> Console:
    """Print ``table`` whole and return the console: in a pipe or a log file, rich would
    cut its cells to fit 80 columns (``befo...``), so it gets the width it needs there."""
    console = Console()
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(1000)).maximum
        console = Console(width=max(console.width, needed))
    console.print(table)
    return console


def _add_compare_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="run GRPO, GRPO+DADS, GRPO+STCR and APO side by side on the demo task",
        description=(
            "Run the demo once per variant and seed (same task, budget and seeds), then write "
            "compare.md with a table and figures."
        ),
    )
    parser.add_argument("--output", default="runs/compare")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run")
    parser.add_argument("--quick", action="store_true", help="a smoke run of every variant")
    parser.add_argument("--beta", type=float, default=None, help="KL coefficient of every run")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(PAPER_VARIANTS),
        help="which variants to run (default: the paper's four; APO+DS: with dynamic "
        "sampling, APO+overlong: soft overlong punishment over the last 32 tokens and "
        "truncated answers out of the loss, APO+IS: truncated importance sampling, cap 2)",
    )
    parser.set_defaults(handler=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    if args.parallel < 1:
        raise ValueError("--parallel must be at least 1")
    path = run_compare(
        args.output,
        seeds=args.seeds,
        parallel=args.parallel,
        steps=args.steps,
        quick=args.quick,
        beta=args.beta,
        variants=args.variants,
    )
    print(path.read_text().split("\n\n![")[0])
    print(f"\nreport: {path}")
    return 0


def _add_plot_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw the figures of one or more runs (finished or running)",
        description="Draw reward/accuracy, lengths, KL, entropy and DADS/STCR weights over steps.",
    )
    parser.add_argument("runs", nargs="+", help="run folders (with metrics.jsonl)")
    parser.add_argument(
        "--output",
        default=None,
        help="where the PNGs go (default: RUN/plots for one run; plots/A_vs_B for runs A and B)",
    )
    parser.add_argument("--smooth", type=int, default=5, help="moving-mean window")
    parser.set_defaults(handler=_run_plot)


def default_plot_folder(runs: Sequence[str]) -> Path:
    """``RUN/plots`` for one run; for several, a folder of the working directory named for
    the comparison (``plots/a_vs_b``), inside none of the runs."""
    if len(runs) == 1:
        return Path(runs[0]) / "plots"
    from apo.plots import default_labels

    return Path("plots") / "_vs_".join(label.replace("/", "-") for label in default_labels(runs))


def _run_plot(args: argparse.Namespace) -> int:
    from apo.plots import plot_runs

    for run in args.runs:
        if not (Path(run) / "metrics.jsonl").is_file():
            raise ValueError(f"{run} has no metrics.jsonl: not a training run folder")
    output = args.output or str(default_plot_folder(args.runs))
    check_writable(output, "--output")
    if args.output is None and len(args.runs) > 1:
        print(f"figures of {len(args.runs)} runs in {output} (choose with --output)")
    for path in plot_runs(args.runs, output, smooth=args.smooth):
        print(path)
    return 0


class _HelpWithSplits(argparse.Action):
    """``apo eval --help``: the benchmarks' splits are read from their modules, which
    load pyarrow and PIL, only when this help is asked for, never to build the parser."""

    def __init__(self, option_strings: list[str], dest: str, **_: object) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show this help message and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from apo.evaluation.benchmarks import BENCHMARKS

        splits = "; ".join(f"{b.name}: {', '.join(b.splits)}" for b in BENCHMARKS.values())
        parser.description = f"{parser.description} Splits (first: default): {splits}."
        parser.print_help()
        parser.exit()


def _add_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model on MathVista, MathVerse, MMK12, MathVision, MMStar, MMMU...",
        description=(
            "Generate answers to benchmark questions read from local files, judge them with "
            "each benchmark's rule-based scoring, and write per-question results and a "
            "summary; or compare summaries side by side (--compare). A rerun with the same "
            "--output skips the questions already answered."
        ),
        add_help=False,
    )
    parser.add_argument("-h", "--help", action=_HelpWithSplits)
    parser.add_argument(
        "--model",
        help=(
            "model folder or hub id (tiny: the built-in one), or a checkpoint of apo train "
            "(RUN/checkpoints/step-N: loaded directly, LoRA merged, nothing written)"
        ),
    )
    parser.add_argument(
        "--benchmark",
        action="append",
        default=[],
        metavar="NAME[:SPLIT]=PATH",
        help=f"a benchmark and its files (repeatable); NAME: {', '.join(BENCHMARK_NAMES)}",
    )
    parser.add_argument("--samples-per-question", type=int, default=1, metavar="K")
    parser.add_argument("--temperature", type=float, help="default: 0 (greedy) for K=1, else 1")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8, help="questions per generation call")
    parser.add_argument("--limit", type=int, help="only the first N questions of each benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow custom modelling code of the model folder (never taken from a checkpoint)",
    )
    parser.add_argument(
        "--system-prompt",
        metavar="TEXT",
        help="the system turn; none: no system turn of ours (a chat template may add its own "
        "default one, as Qwen's does) (default: the R1-style prompt asking for <think> and "
        "<answer>)",
    )
    parser.add_argument(
        "--question-template",
        metavar="TEXT",
        help="the user text: {question} is the question, {choices} the lettered options "
        "(default: {question}, options appended)",
    )
    parser.add_argument(
        "--prompt-from",
        metavar="CONFIG",
        help="the prompt (data.prompt) of an apo train config or run folder, to evaluate a "
        "model with the prompt it was trained with; the two flags above override it",
    )
    parser.add_argument("--output", help="results folder (default: runs/eval/<model>)")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="RESULTS",
        help="print summaries side by side and exit (with a warning when the runs differ in "
        "prompt, token limit or sampling)",
    )
    parser.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    if args.compare:
        summaries = [load_summary(path) for path in args.compare]
        labels = [Path(path).name or str(path) for path in args.compare]
        print(comparability_warning(summaries, labels), end="")
        print(compare_table(summaries, labels), end="")
        return 0
    if not args.model or not args.benchmark:
        raise ValueError("give --model and at least one --benchmark NAME=PATH (or --compare)")
    from apo.evaluation.runner import (
        BenchmarkRequest,
        EvalRunConfig,
        default_output,
        eval_prompt,
        evaluate,
    )
    from apo.export import is_checkpoint, load_checkpoint_as_model
    from apo.models import load_model

    _quiet_model_loading()
    requests = [BenchmarkRequest.parse(spec) for spec in args.benchmark]
    settings = EvalRunConfig(
        samples_per_question=args.samples_per_question,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        prompt=eval_prompt(args.system_prompt, args.question_template, args.prompt_from),
    )
    output = Path(args.output) if args.output else default_output(args.model)
    load = load_checkpoint_as_model if is_checkpoint(args.model) else load_model
    summary = evaluate(
        args.model,
        requests,
        settings,
        output,
        limit=args.limit,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        load=load,
    )
    print(markdown_summary(summary), end="")
    print(f"results: {output}")
    return 0


def _add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a checkpoint as a Hugging Face model folder",
        description=(
            "Write the model of a checkpoint of apo train (RUN/checkpoints/step-N) as a folder "
            "that from_pretrained loads: weights, config, tokenizer and processor files. LoRA "
            "adapters are merged into the weights unless --no-merge. OUTPUT must be new or empty."
        ),
    )
    parser.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a checkpoint folder (RUN/checkpoints/step-N)"
    )
    parser.add_argument("output", metavar="OUTPUT", help="the model folder to write (new or empty)")
    parser.add_argument(
        "--no-merge",
        action="store_true",
        help="keep LoRA as a peft adapter (its adapter_config.json names the base model)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow custom modelling code of the model folder (never taken from a checkpoint)",
    )
    parser.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from apo.export import export_checkpoint

    _quiet_model_loading()
    output = export_checkpoint(
        args.checkpoint,
        args.output,
        merge_lora=not args.no_merge,
        trust_remote_code=args.trust_remote_code,
    )
    print(f"exported model: {output}")
    return 0


def _add_convert_gguf_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert-gguf",
        help="write a GGUF model file as a Hugging Face model folder",
        description=(
            "Dequantise a GGUF model file (llama.cpp's format; needs pip install gguf) and "
            "write it as a folder that from_pretrained and apo train load in seconds: "
            "safetensors weights, config, tokenizer, generation config. A .gguf file also "
            "works as model.name_or_path directly, at the cost of the dequantisation at "
            "every load. OUTPUT must be new or empty."
        ),
    )
    parser.add_argument("gguf", metavar="FILE", help="the .gguf model file")
    parser.add_argument("output", metavar="OUTPUT", help="the model folder to write")
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="weights"
    )
    parser.set_defaults(handler=_run_convert_gguf)


def _run_convert_gguf(args: argparse.Namespace) -> int:
    from apo.models.gguf import convert_gguf

    print(f"converted model: {convert_gguf(args.gguf, args.output, args.dtype)}")
    return 0


class _LibraryNoise(logging.Filter):
    """Drops library messages that tell an apo user nothing."""

    # accelerate warns at every save of a model with tied embeddings (lm_head shares
    # embed_tokens' weight) that it removed the shared tensor: expected, the tie is
    # restored when the model loads.
    NOISE = ("Removed shared tensor",)

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(noise in record.getMessage() for noise in self.NOISE)


def _console_logging() -> None:
    """One line per warning (level, logger, message), set up once for every command."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_LibraryNoise())


def _quiet_model_loading() -> None:
    """No progress bar per weight load and save (instant on small models); downloads
    from a hub keep theirs."""
    from huggingface_hub.utils import enable_progress_bars
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # also turns off the hub's bars ...
    enable_progress_bars()  # ... which a long download needs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apo",
        description=(
            "Asymmetric Policy Optimization (GRPO + DADS + STCR) for vision-language models."
        ),
    )
    parser.add_argument("--version", action="version", version=f"apo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_advantages_parser(subparsers)
    _add_train_parser(subparsers)
    _add_estimate_memory_parser(subparsers)
    _add_demo_parser(subparsers)
    _add_compare_parser(subparsers)
    _add_plot_parser(subparsers)
    _add_eval_parser(subparsers)
    _add_export_parser(subparsers)
    _add_convert_gguf_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _console_logging()
    try:
        return args.handler(args) or 0
    except ValidationError as error:  # a command-line value a settings model refused
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"]) or "settings"
            message = problem["msg"].removeprefix("Value error, ")
            print(
                f"apo {args.command}: error: {where}: {message} (got {problem.get('input')!r})",
                file=sys.stderr,
            )
        return 2
    except ValueError as error:  # bad input: config, data, model path, reward reference
        print(f"apo {args.command}: error: {error}", file=sys.stderr)
        return 2
    except CheckpointError as error:  # a folder could not be written (a full disk)
        print(f"apo {args.command}: error: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
