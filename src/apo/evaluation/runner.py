"""``apo eval``: generate answers to benchmark questions, judge them, write results.

For each benchmark the output folder gets ``<name>.jsonl``, one line per sampled
response (question id, sample index, prompt, response, extracted answer,
verdict, length, truncation, format), appended batch by batch, so a rerun with
the same settings skips the questions already answered. ``summary.json`` and
``summary.md`` hold the figures of :func:`apo.evaluation.report.summarize`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import Field, ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from apo.data.prompts import PromptConfig, check_question_template, prompt_input, render_prompt
from apo.evaluation.answers import answer_questions, benchmark_verdicts
from apo.evaluation.benchmarks import Benchmark, Question, get_benchmark
from apo.evaluation.judge import Judge
from apo.evaluation.report import effective_temperature, markdown_summary, summarize
from apo.models import LoadedModel, ModelConfig, load_model
from apo.nested import config_changes
from apo.rollout import DEFAULT_ENGINE, RolloutEngine, SamplingConfig, build_engine
from apo.run_folder import check_writable, run_lock
from apo.section import Section

logger = logging.getLogger(__name__)


class EvalRunConfig(Section):
    """How answers are generated; results made under other settings are not mixed."""

    samples_per_question: int = Field(1, ge=1, description="K responses per question.")
    temperature: float | None = Field(
        None, ge=0, description="None: greedy (0) for one sample, 1.0 for several."
    )
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(2048, ge=1)
    batch_size: int = Field(8, ge=1, description="Questions per generation call.")
    seed: int = 0
    prompt: PromptConfig = Field(
        default_factory=PromptConfig, description="System prompt and question template."
    )

    @property
    def resolved_temperature(self) -> float:
        return effective_temperature(self.temperature, self.samples_per_question)


# ------------------------------------------------------------------ the prompt


def training_prompt(path: str | Path) -> PromptConfig:
    """``data.prompt`` of an ``apo train`` config (a YAML file, or a run folder holding
    its ``config.yaml``): the prompt the model was trained with. A config whose data
    section sets no prompt was trained with the default one."""
    path = Path(path)
    file = path / "config.yaml" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"--prompt-from {file}: no such file (give an apo train config)")
    try:
        raw = yaml.safe_load(file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0]
        raise ValueError(f"--prompt-from {file}: not a readable YAML file ({reason})") from None
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        raise ValueError(
            f"--prompt-from {file}: no data section, so not an apo train config "
            "(a run folder's config.yaml has one)"
        )
    try:
        return PromptConfig.model_validate(data.get("prompt") or {})
    except ValidationError as error:
        problem = error.errors()[0]
        key = ".".join(["data", "prompt", *map(str, problem["loc"])])
        message = problem["msg"].removeprefix("Value error, ")
        raise ValueError(f"--prompt-from {file}: {key}: {message}") from None


def eval_prompt(
    system_prompt: str | None = None,
    question_template: str | None = None,
    prompt_from: str | Path | None = None,
) -> PromptConfig:
    """The prompt of ``apo eval``: a training config's (``--prompt-from``) or the default,
    with ``--system-prompt`` (``none``: no system turn) and ``--question-template`` over it."""
    prompt = training_prompt(prompt_from) if prompt_from is not None else PromptConfig()
    changes: dict[str, Any] = {}
    if system_prompt is not None:
        none = system_prompt.strip().lower() in ("", "none")
        changes["system_prompt"] = None if none else system_prompt
    if question_template is not None:
        try:
            check_question_template(question_template)
        except ValueError as error:
            raise ValueError(f"--question-template {question_template!r}: {error}") from None
        changes["question_template"] = question_template
    return prompt.model_copy(update=changes)


@dataclass(frozen=True)
class BenchmarkRequest:
    """``name[:split]=PATH`` from the command line."""

    benchmark: Benchmark
    split: str
    path: str

    @property
    def key(self) -> str:
        default = self.benchmark.splits[0]
        return (
            self.benchmark.name if self.split == default else f"{self.benchmark.name}-{self.split}"
        )

    @classmethod
    def parse(cls, spec: str) -> BenchmarkRequest:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise ValueError(f"--benchmark {spec!r}: expected NAME=PATH or NAME:SPLIT=PATH")
        name, _, split = name.partition(":")
        benchmark = get_benchmark(name.strip().lower())
        split = split or benchmark.splits[0]
        if split not in benchmark.splits:
            raise ValueError(
                f"--benchmark {spec!r}: {benchmark.name} has no split {split!r}; "
                f"choose from {', '.join(benchmark.splits)}"
            )
        return cls(benchmark, split, path)


# ------------------------------------------------------------------ results files


def read_results(path: Path, samples: int) -> dict[str, list[dict[str, Any]]]:
    """Complete questions (all ``samples`` responses) already in a results file; the
    file is rewritten without partial questions or a line cut short by a kill."""
    if not path.exists():
        return {}
    by_question: dict[str, list[tuple[dict[str, Any], str]]] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # cut short by a kill
        by_question.setdefault(row["id"], []).append((row, line))
    complete = {qid: rows for qid, rows in by_question.items() if len(rows) == samples}
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text("".join(line + "\n" for rows in complete.values() for _, line in rows))
    os.replace(partial, path)
    return {qid: [row for row, _ in rows] for qid, rows in complete.items()}


def _check_settings(output: Path, record: dict[str, Any]) -> None:
    """Refuse to add results made under other settings to an existing folder."""
    path = output / "settings.json"
    if path.exists():
        changed = [key for key, _, _ in config_changes(json.loads(path.read_text()), record)]
        if changed:
            raise ValueError(
                f"{output} holds results made with other settings ({', '.join(changed)}): "
                "use another --output, or delete that folder to start again"
            )
    else:
        output.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")


# ------------------------------------------------------------------ the evaluation


def default_output(model: str) -> Path:
    return Path("runs") / "eval" / re.sub(r"[^A-Za-z0-9_.-]+", "_", model.strip("/"))


def evaluate(
    model: str,
    requests: Sequence[BenchmarkRequest],
    settings: EvalRunConfig,
    output: str | Path,
    *,
    limit: int | None = None,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    progress: bool = True,
    load: Callable[..., LoadedModel] = load_model,
) -> dict[str, Any]:
    """Evaluate ``model`` on every requested benchmark; returns the summary.

    Every benchmark's files are read and checked before the model is loaded, by
    ``load(ModelConfig, device=...)``: ``load_model``, or a loader of checkpoints.
    ``trust_remote_code``: the user's flag, the only source of that trust.
    """
    output = Path(output)
    keys = [r.key for r in requests]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a benchmark is given twice: {', '.join(keys)}")
    questions = {r.key: r.benchmark.questions(r.path, r.split, limit) for r in requests}
    check_writable(output, "--output")
    with run_lock(output, "apo eval"):  # one evaluation at a time writes a folder
        _check_settings(
            output, {"model": model, "dtype": dtype, **settings.model_dump(mode="json")}
        )

        device = "cuda" if torch.cuda.is_available() else "cpu"
        model_config = ModelConfig(
            name_or_path=model, dtype=dtype, trust_remote_code=trust_remote_code
        )
        loaded = load(model_config, device=device)
        engine = build_engine(
            DEFAULT_ENGINE, loaded.model, loaded.processor, loaded.tokenizer, loaded.is_multimodal
        )
        sampling = SamplingConfig(
            group_size=settings.samples_per_question,
            temperature=settings.resolved_temperature,
            top_p=settings.top_p,
            max_new_tokens=settings.max_new_tokens,
            max_batch_size=settings.batch_size,
        )
        judge = Judge()
        summary: dict[str, Any] = {"model": model, "settings": settings.model_dump(mode="json")}
        # Benchmarks evaluated earlier into this folder (same settings, checked) stay.
        previous = output / "summary.json"
        summary["benchmarks"] = (
            json.loads(previous.read_text())["benchmarks"] if previous.exists() else {}
        )
        try:
            for request in requests:
                rows = _run_benchmark(
                    request,
                    questions[request.key],
                    engine,
                    loaded,
                    sampling,
                    settings,
                    judge,
                    output,
                    progress,
                )
                result = summarize(rows)
                result["split"] = request.split
                result["protocol"] = request.benchmark.protocol
                summary["benchmarks"][request.key] = result
        finally:
            judge.close()
        (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (output / "summary.md").write_text(markdown_summary(summary))
        return summary


@contextlib.contextmanager
def progress_bar(name: str, total: int, completed: int, enabled: bool) -> Iterator[Any]:
    """A rich progress bar of questions answered; yields ``advance(n)``."""
    if not enabled:
        yield lambda n: None
        return
    columns = (f"{name}", BarColumn(), MofNCompleteColumn(), "eta", TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(name, total=total, completed=completed)
        yield lambda n: bar.update(task, advance=n)


def _run_benchmark(
    request: BenchmarkRequest,
    questions: list[Question],
    engine: RolloutEngine,
    loaded: LoadedModel,
    sampling: SamplingConfig,
    settings: EvalRunConfig,
    judge: Judge,
    output: Path,
    progress: bool,
) -> list[dict[str, Any]]:
    path = output / f"{request.key}.jsonl"
    done = read_results(path, settings.samples_per_question)
    pending = [q for q in questions if q.id not in done]
    torch.manual_seed(settings.seed)
    with progress_bar(
        request.key, len(questions), len(questions) - len(pending), progress
    ) as advance:
        for start in range(0, len(pending), settings.batch_size):
            chunk = pending[start : start + settings.batch_size]
            examples = [q.example() for q in chunk]
            texts = [
                render_prompt(e, loaded.processor, settings.prompt, loaded.is_multimodal)
                for e in examples
            ]
            rows = answer_questions(
                engine,
                [prompt_input(e, t) for e, t in zip(examples, texts, strict=True)],
                [
                    {"id": q.id, "prompt": t, "answer": q.answer, "categories": q.categories}
                    for q, t in zip(chunk, texts, strict=True)
                ],
                sampling,
                benchmark_verdicts(judge, request.benchmark, chunk),
            )
            with path.open("a") as handle:
                handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            for row in rows:
                done.setdefault(row["id"], []).append(row)
            advance(len(chunk))
    return [row for q in questions for row in done[q.id]]
