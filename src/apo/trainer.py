"""The training loop: rollout -> reward -> advantage -> update.

One step, as :meth:`Trainer.step` reads top to bottom:

1. take this process's share of the step's prompts;
2. generate G responses per prompt;
3. score them (reward components, correctness); with dynamic sampling, repeat
   1-3 on further prompts until the step has its groups with varied rewards;
4. group advantages with STCR, DADS KL weights (``apo.algorithms``);
5. reference log-probs (and old log-probs when the update is off-policy);
6. ``ppo_epochs`` passes over ``prompts_per_step / prompts_per_update``
   updates, each with gradient accumulation over micro-batches and clipping;
7. log; every N steps evaluate and checkpoint.

Distributed: prompts are split between processes so that each update's
prompts are spread over all of them, whole groups on one process, and loss
denominators are summed over processes, so N processes compute the same
gradients as one process with the same global batch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DistributedDataParallelKwargs,
    DistributedType,
    gather_object,
    set_seed,
)
from torch import Tensor

from apo.agreement import AgreedFailure, all_reduce_mean_gradients, run_agreed
from apo.algorithms import (
    apo_objective,
    importance_weights,
    shape_advantages,
    trained_responses,
)
from apo.batching import MicroBatch, StepBatcher, prompt_seed, rank_positions, split_to_count
from apo.checkpoint import (
    CheckpointError,
    DamagedCheckpoint,
    any_process_failed,
    check_free_space,
    checkpoint_name,
    clean_staging,
    load_checkpoint,
    read_trainer_state,
    register_lora_hooks,
    save_checkpoint,
)
from apo.config import TrainConfig, config_to_yaml
from apo.data import PromptDataset, ResumableSampler
from apo.distributed import check_deepspeed_config, configure_deepspeed
from apo.dynamic_sampling import collect_groups, join_groups, renumbered
from apo.evaluation.training import PeriodicEvaluation
from apo.export import save_model_folder
from apo.memory import OutOfMemory, retry_halving
from apo.metrics import memory_metrics, rollout_metrics, throughput
from apo.models import (
    SequenceBatch,
    apply_lora,
    build_reference,
    check_sharding,
    fsdp_modules,
    load_model,
    resolve_dtype,
    sequence_log_probs,
)
from apo.optim import build_optimizer
from apo.preflight import check_inputs_exist, check_resumable, claim_run_folder, resume_point
from apo.progress import training_progress
from apo.rewards import RewardRunner, RewardSample
from apo.rewards.overlong import overlong_penalty, with_overlong_penalty
from apo.rewards.runner import FAILURE_KINDS, RewardResult
from apo.rollout import PromptInput, Rollout, RolloutEngine, build_engine
from apo.tracking import RunTracker, sample_records

logger = logging.getLogger(__name__)

T = TypeVar("T")

EVAL_STREAM = 2**40  # evaluation seeds: prompt_seed(seed, step, EVAL_STREAM), apart from prompts

SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopTraining(SystemExit):
    """Raised in answer to SIGTERM / SIGINT: after saving a checkpoint, or at once on a
    second signal (``saved`` False; the previous checkpoint is the last one)."""

    def __init__(self, code: int, saved: bool = True) -> None:
        super().__init__(code)
        self.saved = saved


class TrainingFailure(RuntimeError):
    """The run cannot go on; the last good state was saved as a checkpoint."""


class NonFiniteTraining(TrainingFailure):
    """Too many updates in a row had a NaN/inf gradient; the last good state was saved."""


class RewardFailure(TrainingFailure):
    """A reward component failed on every response for too many steps in a row."""


class Trainer:
    """Wires the components from a :class:`TrainConfig` and runs the loop."""

    def __init__(self, config: TrainConfig, resume: str | bool | None = None) -> None:
        self.config = config
        # Several processes without a GPU: accelerate wants cpu=True to use gloo.
        multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        # A micro-batch without images leaves the vision tower without gradients:
        # DDP must look for unused parameters, or processes fall out of step. No
        # buffer broadcast before each forward (a language model's buffers, rotary
        # frequencies, are the same everywhere): forward passes then hold no
        # collective, so a process that failed mid-update cannot strand the others
        # in one (apo.agreement).
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True, broadcast_buffers=False)
        self.accelerator = Accelerator(
            mixed_precision=config.training.precision, cpu=multi_cpu, kwargs_handlers=[ddp]
        )
        self._deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        if self._deepspeed:
            check_deepspeed_config(self.accelerator.state.deepspeed_plugin.deepspeed_config)
        self.is_main = self.accelerator.is_main_process
        self.run_dir = Path(config.logging.output_dir)
        set_seed(config.training.seed, device_specific=True)  # + process index

        check_inputs_exist(config, resume)  # before the (possibly long) model load
        # One run per folder: the main process holds its lock until close().
        self._lock = claim_run_folder(self.run_dir) if self.is_main else contextlib.ExitStack()
        try:  # a damaged checkpoint is named now, not after the model has loaded
            checkpoint = resume_point(
                self.run_dir, resume, self.accelerator.num_processes, warn=self.is_main
            )
            self._build(config, checkpoint)
        except BaseException:
            self._lock.close()
            raise

    def _build(self, config: TrainConfig, checkpoint: Path | None) -> None:
        """Load and wire the model, reference, data, rewards, optimizer and engine."""
        # --- model, reference, data, rewards, engine
        loaded = load_model(config.model, device=self.accelerator.device)
        self.processor, self.tokenizer = loaded.processor, loaded.tokenizer
        self.is_multimodal = loaded.is_multimodal
        policy = loaded.model
        if config.lora.enabled:
            policy = apply_lora(policy, config.lora)
            register_lora_hooks(self.accelerator)
        reference_dtype = getattr(torch, config.reference.dtype) if config.reference.dtype else None
        self.reference = build_reference(
            policy,
            config.reference.kind,
            device=config.reference.device,
            dtype=reference_dtype,
            chunk_size=config.batch.logprob_chunk_size,
        )
        self.dataset = PromptDataset.load(config.data, self.processor, self.is_multimodal)
        if self.is_main and self.dataset.report.dropped:
            logger.warning("training data: %s", self.dataset.report.summary())
        self.sampler = ResumableSampler(
            len(self.dataset),
            config.batch.prompts_per_step,
            config.training.seed,
            config.data.shuffle,
        )
        self.positions = rank_positions(
            config.batch.prompts_per_step,
            config.batch.prompts_per_update,
            self.accelerator.process_index,
            self.accelerator.num_processes,
        )
        self.rewards = RewardRunner(config.rewards)
        self.evaluation = PeriodicEvaluation(
            config.eval.datasets,
            self.processor,
            self.is_multimodal,
            self.rewards,
            judge_timeout=config.rewards.timeout_seconds,
        )

        # --- optimisation
        self.total_steps = config.total_steps(len(self.dataset))
        self.updates_per_step = config.batch.prompts_per_step // config.batch.prompts_per_update
        # Both halved after running out of memory:
        self.micro_batch_size = config.batch.micro_batch_size
        # After running out of memory, micro-batches are cut by rows (no token budget).
        self._halved_micro_batches = False
        # None: the no-grad passes run on the update's micro-batches themselves.
        self.logprob_batch_size = config.batch.logprob_batch_size
        total_updates = self.total_steps * self.updates_per_step * config.algorithm.ppo_epochs
        optimizer, scheduler = build_optimizer(
            policy, config.optim, total_updates, self.accelerator.device.type
        )
        if self._deepspeed:
            configure_deepspeed(
                self.accelerator.state.deepspeed_plugin.deepspeed_config,
                config,
                self.accelerator.num_processes,
                policy,
            )
        self.policy, self.optimizer = self.accelerator.prepare(policy, optimizer)
        # Several DDP processes average gradients once per update, after agreeing
        # that none failed (apo.agreement); sharded engines keep their own sync.
        self._explicit_sync = isinstance(self.policy, torch.nn.parallel.DistributedDataParallel)
        check_sharding(self.policy, lora=config.lora.enabled)
        sharded = fsdp_modules(self.policy)
        self._fsdp2 = bool(sharded)
        if config.batch.share_prompts and (self._fsdp2 or self._deepspeed):
            raise ValueError(
                "batch.share_prompts is not supported with FSDP2 or DeepSpeed (two forward "
                "passes per backward, untested with sharded engines): set "
                "batch.share_prompts=false"
            )
        for module in sharded:
            # A process whose micro-batch has no image leaves the vision tower
            # without gradients; the others do not: reduce zeros for it.
            module.set_reduce_scatter_unused_params(True)
        # Not prepared: accelerate would step it once per process. Its state goes in
        # trainer_state.json: accelerate would pickle it and load it with code allowed.
        self.scheduler = scheduler
        self.engine: RolloutEngine = build_engine(
            config.rollout.engine, self.policy, self.processor, self.tokenizer, self.is_multimodal
        )
        self.engine.record_logprobs = config.algorithm.importance_sampling != "off"
        self.batcher = StepBatcher(
            self.processor,
            self.tokenizer.pad_token_id,
            self.is_multimodal,
            self.accelerator.device,
            share_prompts=config.batch.share_prompts,
        )

        # --- bookkeeping
        self.step_index = 0
        self.tracker = RunTracker(
            self.run_dir,
            config.model_dump(mode="json"),
            enabled=self.is_main,
            tensorboard=config.logging.tensorboard,
            wandb=config.logging.wandb,
            wandb_project=config.logging.wandb_project,
            wandb_mode=config.logging.wandb_mode,
        )
        self._stop_signal: int | None = None
        self._nonfinite_in_a_row = 0
        self._failing_steps: dict[str, int] = {}
        if checkpoint is None:
            self.tracker.truncate_after(0)  # records of an earlier attempt that never saved
        else:
            self._resume(checkpoint)
        if self.is_main:  # only now: a refused resume leaves the run's config as it was
            (self.run_dir / "config.yaml").write_text(config_to_yaml(config))

    # ------------------------------------------------------------------ the loop

    def train(self) -> Path | None:
        """Train to the last step; returns the exported model folder (if any)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in SIGNAL_EXIT_CODES}
        try:
            if self.is_main:
                check_free_space(
                    self.run_dir / "checkpoints",
                    self._checkpoint_bytes(),
                    self.config.checkpoint.keep_last,
                )
            with self._progress() as progress:
                if self.config.eval.at_start and self.step_index == 0:
                    self.tracker.log(0, progress.evaluate())
                while self.step_index < self.total_steps:
                    try:
                        metrics = self.step()
                    except (TrainingFailure, AgreedFailure, OutOfMemory):
                        self.save_checkpoint()  # the weights are still the last good ones
                        raise
                    self.step_index += 1
                    self.tracker.log(self.step_index, metrics)
                    progress.advance(metrics)
                    if self._should(self.config.eval.every):
                        self.tracker.log(self.step_index, progress.evaluate())
                    if self._stop_requested():
                        self.save_checkpoint()
                        raise StopTraining(SIGNAL_EXIT_CODES[self._stop_signal])
                    if self._should(self.config.checkpoint.every):
                        self.save_checkpoint()
                if self.config.eval.every or self.config.eval.at_start:
                    self.tracker.log(self.step_index, progress.evaluate())
            self.save_checkpoint()
            return self.export_model() if self.config.checkpoint.export_final_model else None
        except StopTraining as stop:
            if not stop.saved and self.is_main:  # stopped mid-step, maybe mid-save
                clean_staging(self.run_dir / "checkpoints")
            raise
        finally:
            # A signal while closing (a second Ctrl-C right after a quick stop) must
            # not break the reward pool's shutdown with a traceback: ignored until
            # closed, then the caller's handlers are back.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            try:
                self.close()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def step(self) -> dict[str, float]:
        """One rollout and its updates; returns this step's metrics (all processes)."""
        cfg, timings = self.config, {}
        step_start = time.perf_counter()

        # 1.-3. this process's prompts, G responses to each, their scores; with dynamic
        # sampling, more batches until the step has its groups with varied rewards (a
        # failure on one process stops every process, with its message)
        self.batcher.new_step()
        indices, prompts, rollouts, scored, generated, sampling = self._rollout_groups(timings)
        examples = [self.dataset.examples[i] for i in indices]

        self._check_reward_failures(scored.failures, generated)

        # 4. advantages (STCR) and KL weights (DADS), group by group
        lengths = torch.tensor([r.length for r in rollouts], dtype=torch.float32)
        shaped = shape_advantages(
            scored.total, scored.correct, lengths, cfg.rollout.group_size, cfg.algorithm
        )
        keep = trained_responses(  # not dynamic sampling's fill-ins, nor cut answers if asked
            scored.total,
            torch.tensor([r.truncated for r in rollouts]),
            cfg.rollout.group_size,
            varied_only=cfg.algorithm.filter_uniform_groups or cfg.rollout.dynamic_sampling,
            overlong_filter=cfg.algorithm.overlong_filter,
        )

        # 5. per update, micro-batches with reference (and old) log-probs
        start = time.perf_counter()
        updates = self.batcher.updates(
            prompts,
            rollouts,
            shaped.advantages,
            shaped.kl_weights,
            keep,
            self.updates_per_step,
            self.micro_batch_size,
            cfg.batch.max_tokens_per_micro_batch if not self._halved_micro_batches else None,
        )
        if cfg.batch.max_tokens_per_micro_batch and self.accelerator.num_processes > 1:
            self._equal_micro_batch_counts(updates)
        timings["time/batching"] = time.perf_counter() - start
        start = time.perf_counter()
        self._fill_log_probs(
            updates, reference=self.reference is not None and cfg.algorithm.beta > 0
        )
        timings["time/reference"] = time.perf_counter() - start

        # 6. the updates
        start = time.perf_counter()
        loss_metrics = self._update(updates)
        timings["time/update"] = time.perf_counter() - start
        timings["time/step"] = time.perf_counter() - step_start

        self.batcher.new_step()
        # 7. metrics of the whole step, over all processes
        metrics = self._rollout_metrics(rollouts, scored, shaped, keep, timings)
        metrics |= sampling | loss_metrics
        metrics["optim/lr"] = self.scheduler.get_last_lr()[0]
        self._log_samples(examples, rollouts, scored, shaped)
        return metrics

    # ------------------------------------------------------------------ pieces of a step

    def _agreed(self, attempt: Callable[[], T]) -> T:
        """``attempt()``; with several processes, a failure on any is raised on all."""
        return run_agreed(attempt, gather_object, self.accelerator.num_processes)

    def _rollout_groups(
        self, timings: dict[str, float]
    ) -> tuple[list[int], list[PromptInput], list[Rollout], RewardResult, int, dict[str, float]]:
        """This process's examples (dataset indices), their prompts, responses and
        scores, the number of responses it generated (more than it returns with
        dynamic sampling: :mod:`apo.dynamic_sampling`) and that sampling's metrics."""
        cfg = self.config

        def generate_round(
            round_index: int,
        ) -> tuple[list[int], list[PromptInput], list[Rollout], RewardResult]:
            global_indices = self.sampler.next_batch()
            indices = [global_indices[p] for p in self.positions]
            prompts = self.dataset.prompt_inputs(indices)
            rollouts, scored = self._agreed(
                lambda: self._generate_and_score(prompts, indices, round_index, timings)
            )
            return indices, prompts, rollouts, scored

        if not cfg.rollout.dynamic_sampling:
            indices, prompts, rollouts, scored = generate_round(0)
            return indices, prompts, rollouts, scored, len(rollouts), {}

        def scored_round(round_index: int) -> tuple[list[int], list[Rollout], RewardResult]:
            indices, _, rollouts, scored = generate_round(round_index)
            return indices, rollouts, scored  # the prompts of the groups kept are built below

        collected = collect_groups(
            scored_round,
            self.positions,
            cfg.batch.prompts_per_step,
            cfg.rollout.group_size,
            cfg.rollout.dynamic_sampling_max_rounds,
            lambda local: gather_object([local]),
        )
        indices = [group.example for group in collected.groups]
        return (
            indices,
            self.dataset.prompt_inputs(indices),
            renumbered(collected.groups),
            join_groups(collected.groups, collected.failures),
            collected.generated,
            collected.metrics,
        )

    def _generate_and_score(
        self,
        prompts: list[PromptInput],
        indices: list[int],
        round_index: int,
        timings: dict[str, float],
    ) -> tuple[list[Rollout], RewardResult]:
        """G responses to each of these examples, and their scores (times added up
        over a step's rounds)."""
        cfg = self.config
        start = time.perf_counter()
        seeds = None
        if cfg.rollout.seed_per_prompt:  # a round's prompts after the earlier rounds'
            offset = round_index * cfg.batch.prompts_per_step
            seeds = [
                prompt_seed(cfg.training.seed, self.step_index, offset + p) for p in self.positions
            ]
        rollouts = self._generate(prompts, seeds)
        timings["time/generation"] = timings.get("time/generation", 0.0) + (
            time.perf_counter() - start
        )
        start = time.perf_counter()
        examples = [self.dataset.examples[i] for i in indices]
        scored = self.rewards.score(
            [RewardSample.of(examples[r.prompt_index], r.text) for r in rollouts]
        )
        if cfg.rewards.overlong_buffer:
            lengths = torch.tensor([r.length for r in rollouts])
            scored = with_overlong_penalty(
                scored,
                overlong_penalty(
                    lengths,
                    cfg.rollout.max_new_tokens,
                    cfg.rewards.overlong_buffer,
                    cfg.rewards.overlong_penalty,
                ),
            )
        timings["time/reward"] = timings.get("time/reward", 0.0) + time.perf_counter() - start
        return rollouts, scored

    def _generate(self, prompts: list[PromptInput], seeds: list[int] | None) -> list[Rollout]:
        """The engine's rollouts; it retries smaller batches itself after running out of
        memory, so an out-of-memory error here means one prompt's group is too big."""
        rollout = self.config.rollout
        try:
            rollouts = self.engine.generate(prompts, rollout, seeds)
        except OutOfMemory:
            raise OutOfMemory(
                f"out of memory generating at step {self.step_index + 1}, even for one prompt "
                f"at a time. Lower rollout.group_size (now {rollout.group_size}) or "
                f"rollout.max_new_tokens (now {rollout.max_new_tokens}), or use smaller images"
            ) from None
        if self.engine.record_logprobs and any(r.sampling_logps is None for r in rollouts):
            raise ValueError(
                f"rollout.engine {rollout.engine!r} records no sampling log-probs, which "
                f"algorithm.importance_sampling={self.config.algorithm.importance_sampling!r} "
                "needs: use rollout.engine native or transformers"
            )
        return rollouts

    def _equal_micro_batch_counts(self, updates: list[list[MicroBatch]]) -> None:
        """Token budgets cut each process's rows into its own number of micro-batches;
        every process must run as many forward/backward passes (sharded models gather
        their weights in each), so each update gets the largest count of any process."""
        counts = torch.tensor([len(m) for m in updates], device=self.accelerator.device)
        counts = self.accelerator.reduce(counts, "max").tolist()
        for position, count in enumerate(counts):
            updates[position] = split_to_count(updates[position], int(count), self.batcher.halves)

    def _smaller_micro_batches(self, updates: list[list[MicroBatch]], size: int) -> None:
        """Cut every update of this step into micro-batches of ``size`` (kept for the
        rest of the run) after running out of memory."""
        self.micro_batch_size = size
        self._halved_micro_batches = True  # rows from now on, even with a token budget
        if self.is_main:
            logger.warning(
                "out of memory in the update at step %d: retrying with micro-batches of %d; set "
                "batch.micro_batch_size=%d (and no batch.max_tokens_per_micro_batch) to avoid "
                "the retry",
                self.step_index + 1,
                size,
                size,
            )
        self.batcher.recut(updates, size)

    def _update_advice(self, size: int) -> str:
        reason = (
            "even one sequence per micro-batch"
            if size == 1
            else "no automatic retry with several processes"
        )
        return (
            f"out of memory in the update at step {self.step_index + 1} ({reason}). Lower "
            f"batch.micro_batch_size (now {self.micro_batch_size}), rollout.max_new_tokens "
            f"(now {self.config.rollout.max_new_tokens}) or data.max_prompt_length, or turn "
            "on model.gradient_checkpointing / lora.enabled"
        )

    @torch.no_grad()
    def _fill_log_probs(self, updates: list[list[MicroBatch]], reference: bool) -> None:
        """Reference log-probs, and old log-probs when the updates are off-policy.

        With one update per rollout (a single pass over a single mini-batch) the
        policy that sampled the responses is the one being updated, so the old
        log-probs equal the current ones: that extra forward pass is skipped.
        These no-grad passes run over ``batch.logprob_batch_size`` sequences at a
        time, cut across the update's micro-batches.
        """
        on_policy = self.updates_per_step == 1 and self.config.algorithm.ppo_epochs == 1
        if on_policy and not reference:
            return
        for micro_batches in updates:
            rows = sum(len(m) for m in micro_batches)
            widest = max(len(m) for m in micro_batches)
            first = min(self.logprob_batch_size, rows) if self.logprob_batch_size else widest
            retry_halving(
                # batches as wide as the widest micro-batch: the micro-batches themselves
                lambda size, micro_batches=micro_batches, widest=widest: self._agreed(
                    lambda: self._log_prob_pass(
                        micro_batches, reference, not on_policy, None if size == widest else size
                    )
                ),
                first,
                retry=self.accelerator.num_processes == 1 or self._explicit_sync,
                on_halve=self._smaller_log_prob_batches,
                advice=lambda size: (
                    f"out of memory in the log-prob pass at step {self.step_index + 1}. "
                    f"Lower batch.logprob_batch_size (now {self.logprob_batch_size}) or "
                    f"batch.logprob_chunk_size, or rollout.max_new_tokens"
                ),
            )

    def _smaller_log_prob_batches(self, old: int, new: int) -> None:
        self.logprob_batch_size = new  # for the rest of the run too
        if self.is_main:
            logger.warning(
                "out of memory in the log-prob pass at step %d: retrying with batches of "
                "%d; set batch.logprob_batch_size=%d to avoid the retry",
                self.step_index + 1,
                new,
                new,
            )

    def _log_prob_pass(
        self, micro_batches: list[MicroBatch], reference: bool, old: bool, size: int | None
    ) -> None:
        """Set ``ref_logp`` / ``old_logp`` of one update's micro-batches from forward
        passes over ``size`` rows at a time (None: over the micro-batches themselves)."""
        temperature = self.config.rollout.temperature or 1.0

        def log_probs(batch: SequenceBatch) -> dict[str, Tensor]:
            values = {}
            if reference:
                values["ref_logp"] = self.reference.log_probs(batch, temperature=temperature)
            if old:
                values["old_logp"] = sequence_log_probs(
                    self.policy,
                    batch,
                    temperature=temperature,
                    chunk_size=self.config.batch.logprob_chunk_size,
                ).logp
            return values

        if size is None:
            for micro in micro_batches:
                for name, values in log_probs(micro.batch).items():
                    setattr(micro, name, values)
            return
        device = self.accelerator.device
        for micro in micro_batches:
            width = micro.batch.response_ids.shape[1]
            micro.ref_logp = torch.zeros(len(micro), width, device=device) if reference else None
            micro.old_logp = torch.zeros(len(micro), width, device=device) if old else None
        rows = [
            (micro, row, response)
            for micro in micro_batches
            for row, response in enumerate(micro.responses())
        ]
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            batch = self.batcher.sequence_batch(
                [m.prompts[r] for m, r, _ in chunk], [response for _, _, response in chunk]
            )
            for name, values in log_probs(batch).items():
                for position, (m, r, response) in enumerate(chunk):
                    getattr(m, name)[r, : len(response)] = values[position, : len(response)]

    def _update(self, updates: list[list[MicroBatch]]) -> dict[str, float]:
        cfg, accelerator = self.config, self.accelerator
        sums: dict[str, float] = {}
        count = skipped = 0
        grad_norms = []
        self.policy.train()
        for _ in range(cfg.algorithm.ppo_epochs):
            for index, micro_batches in enumerate(updates):
                denominator = self._global_denominator(micro_batches)
                update_sums, _ = retry_halving(
                    lambda size, index=index, denominator=denominator: self._accumulate_gradients(
                        updates[index], denominator
                    ),
                    max(len(m) for m in micro_batches),
                    # several processes retry in step only when they agree on failures
                    retry=accelerator.num_processes == 1 or self._explicit_sync,
                    on_halve=lambda old, new: self._smaller_micro_batches(updates, new),
                    advice=self._update_advice,
                )
                micro_batches = updates[index]
                for key, value in update_sums.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += len(micro_batches)
                norm = self._clip_and_step()
                if not math.isfinite(norm):
                    self._skip_nonfinite_update()
                    skipped += 1
                    continue
                self._nonfinite_in_a_row = 0
                grad_norms.append(norm)
                self.scheduler.step()
        # Freed now, not at the next update's start: the next rollout and log-prob
        # passes need no gradients (a whole model's worth in full fine-tuning).
        self.optimizer.zero_grad(set_to_none=True)
        self.engine.sync_weights()
        metrics = self._loss_metrics(sums, count, grad_norms)
        metrics["optim/skipped_updates"] = float(skipped)
        return metrics

    def _clip_and_step(self) -> float:
        """The update's global gradient norm (every process agrees on it); when it
        is finite, the gradient is clipped to ``optim.grad_clip`` and applied."""
        if self._deepspeed:
            # DeepSpeed's step clips (its gradient_clipping is apo's) and skips a
            # NaN/inf gradient itself.
            self.policy.step()
            if not self.policy.was_step_applied():
                return math.nan
            return float(self.policy.get_global_grad_norm())
        grad_clip = self.config.optim.grad_clip
        max_norm = grad_clip if grad_clip is not None else math.inf
        norm = float(self.accelerator.clip_grad_norm_(self.policy.parameters(), max_norm))
        if math.isfinite(norm):
            self.optimizer.step()
        return norm

    def _accumulate_gradients(
        self, micro_batches: list[MicroBatch], denominator: float
    ) -> dict[str, float]:
        """Forward and backward over one update's micro-batches; returns metric sums."""
        accelerator = self.accelerator
        self.optimizer.zero_grad(set_to_none=True)
        if self._explicit_sync:
            # No process may enter a gradient all-reduce that another, having failed,
            # never reaches: accumulate locally, agree, then average.
            sums = self._agreed(lambda: self._accumulate(micro_batches, denominator, sync=False))
            all_reduce_mean_gradients(
                self.policy.parameters(), lambda t: accelerator.reduce(t, "mean")
            )
            return sums
        return self._accumulate(micro_batches, denominator, sync=True)

    def _accumulate(
        self, micro_batches: list[MicroBatch], denominator: float, sync: bool
    ) -> dict[str, float]:
        """Each micro-batch's forward and backward; with ``sync``, DDP averages the
        gradients in the last backward."""
        temperature = self.config.rollout.temperature or 1.0
        sums: dict[str, float] = {}
        for index, micro in enumerate(micro_batches):
            last = index == len(micro_batches) - 1
            # FSDP2 reduces each micro-batch's gradients: accumulating them unsynced
            # would hold a whole unsharded gradient per process, what FSDP avoids.
            # DeepSpeed accumulates up to the boundary apo marks.
            if (sync and last) or self._fsdp2 or self._deepspeed:
                context = contextlib.nullcontext()
            else:
                context = self.accelerator.no_sync(self.policy)
            if self._deepspeed:
                self.policy.set_gradient_accumulation_boundary(last)
            with context:
                metrics = self._forward_backward(micro, denominator, temperature)
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + float(value)
        return sums

    def _forward_backward(
        self, micro: MicroBatch, denominator: float, temperature: float
    ) -> dict[str, Tensor]:
        """One micro-batch's loss and its backward; returns its metric values."""
        cfg, accelerator = self.config, self.accelerator
        result = sequence_log_probs(
            self.policy,
            micro.batch,
            temperature=temperature,
            chunk_size=cfg.batch.logprob_chunk_size,
            with_entropy=True,
        )
        old = result.logp.detach() if micro.old_logp is None else micro.old_logp
        weights, mismatch = None, {}
        if cfg.algorithm.importance_sampling != "off":
            weights, mismatch = importance_weights(
                old,
                micro.sampling_logp,
                micro.loss_mask,
                cfg.algorithm.importance_sampling,
                cfg.algorithm.importance_cap,
            )
        loss, metrics = apo_objective(
            result.logp,
            old,
            micro.ref_logp,
            micro.loss_mask,
            micro.advantages,
            micro.kl_weights,
            cfg.algorithm,  # no reference (ref_logp None) only with beta = 0
            max_tokens=cfg.rollout.max_new_tokens,
            denominator=denominator,
            token_weights=weights,
        )
        metrics |= mismatch
        # DDP, FSDP2 and DeepSpeed average gradients over processes; the
        # denominator already counts every process, so undo that average.
        if self._deepspeed:  # the engine's own: accelerate's would step the optimizer here
            self.policy.backward(loss * accelerator.num_processes)
        else:
            accelerator.backward(loss * accelerator.num_processes)
        metrics["entropy/mean"] = result.entropy[micro.batch.response_mask].mean()
        return metrics

    def _check_reward_failures(self, failures: dict, responses: int) -> None:
        """Count steps in which a reward component failed on every response (all
        processes); too many in a row stop the run before it trains on garbage."""
        names = list(failures)
        local = torch.tensor(
            [float(sum(failures[n].values())) for n in names] + [float(responses)],
            device=self.accelerator.device,
        )
        totals = self.accelerator.reduce(local, "sum").tolist()
        limit = self.config.rewards.max_failing_steps
        for name, failed in zip(names, totals[:-1], strict=True):
            all_failed = failed >= totals[-1]
            self._failing_steps[name] = self._failing_steps.get(name, 0) + 1 if all_failed else 0
            if self._failing_steps[name] >= limit:
                raise RewardFailure(
                    f"reward {name!r} failed on every response for {limit} steps in a row "
                    "(its first error is in the warnings above); fix it or remove it from "
                    "rewards.components"
                )

    def _skip_nonfinite_update(self) -> None:
        """Drop this update's gradient; after too many in a row, stop the run."""
        self.optimizer.zero_grad(set_to_none=True)
        self._nonfinite_in_a_row += 1
        limit = self.config.training.max_nonfinite_updates
        if self.is_main:
            logger.warning(
                "step %d: NaN/inf gradient, update skipped (%d in a row, limit %d)",
                self.step_index + 1,
                self._nonfinite_in_a_row,
                limit,
            )
        if self._nonfinite_in_a_row >= limit:
            raise NonFiniteTraining(
                f"{self._nonfinite_in_a_row} updates in a row had a NaN/inf gradient at step "
                f"{self.step_index + 1}; the weights are those of the last good update. Lower "
                "optim.lr, check the rewards, or use training.precision=no"
            )

    def _global_denominator(self, micro_batches: list[MicroBatch]) -> float:
        """Responses (tokens for token-mean) of this update, summed over processes."""
        token_mean = self.config.algorithm.aggregation == "token-mean"
        local = 0.0
        for micro in micro_batches:
            mask = micro.loss_mask
            local += float(mask.sum() if token_mean else mask.any(dim=1).sum())
        total = self.accelerator.reduce(torch.tensor(local, device=self.accelerator.device), "sum")
        return float(total)

    def _loss_metrics(
        self, sums: dict[str, float], count: int, grad_norms: list[float]
    ) -> dict[str, float]:
        """Averages over micro-batches and processes; losses per update.

        Each micro-batch's loss terms are partial sums of its update's loss (the
        denominator counts the whole update), so summed over micro-batches and
        processes they give the update's loss, then averaged over updates.
        """
        keys = sorted(sums)  # the same on every process: same config, same metrics
        values = torch.tensor([sums[k] for k in keys] + [count], device=self.accelerator.device)
        values = self.accelerator.reduce(values, "sum").tolist()
        micro_batches = max(values[-1], 1)
        updates = self.updates_per_step * self.config.algorithm.ppo_epochs
        metrics = {
            key: value / (updates if key.startswith("loss/") else micro_batches)
            for key, value in zip(keys, values[:-1], strict=True)
        }
        if grad_norms:
            metrics["optim/grad_norm"] = statistics.fmean(grad_norms)
        return metrics

    def _rollout_metrics(self, rollouts, scored, shaped, keep, timings) -> dict[str, float]:
        """Step diagnostics over every process's responses (:mod:`apo.metrics`)."""
        accelerator = self.accelerator
        local = {
            "length": torch.tensor([r.length for r in rollouts], dtype=torch.float32),
            "truncated": torch.tensor([r.truncated for r in rollouts], dtype=torch.float32),
            "correct": scored.correct.float(),
            "total": scored.total,
            "difficulty": shaped.difficulty,
            "raw_advantage": shaped.raw_advantages,
            "advantage": shaped.advantages,
            "kl_weight": shaped.kl_weights,
            "stcr_weight": shaped.stcr_weights,
            "kept": keep.float(),
            **{f"reward/{name}": value for name, value in scored.components.items()},
        }
        gathered = {k: accelerator.gather(v.to(accelerator.device)).cpu() for k, v in local.items()}
        metrics = rollout_metrics(
            gathered,
            self.config.rollout.group_size,
            stcr_negatives_only=self.config.algorithm.stcr_negatives_only,
        )
        # Reward failures: every process reduces the same vector, whatever failed where.
        keys = [(name, kind) for name in scored.components for kind in FAILURE_KINDS]
        counts = torch.tensor(
            [float(scored.failures[n][k]) for n, k in keys], device=accelerator.device
        )
        for (name, kind), value in zip(
            keys, accelerator.reduce(counts, "sum").tolist(), strict=True
        ):
            metrics[f"reward/{name}/{kind}"] = value
        # Time: the slowest process sets the pace.
        times = torch.tensor(list(timings.values()), device=accelerator.device)
        metrics |= dict(zip(timings, accelerator.reduce(times, "max").tolist(), strict=True))
        metrics |= throughput(gathered["length"].sum().item(), metrics)
        memory = memory_metrics(accelerator.device)  # the fullest process
        values = torch.tensor(list(memory.values()), device=accelerator.device)
        values = accelerator.reduce(values, "max").tolist()
        metrics |= dict(zip(memory, values, strict=True))
        return metrics

    def _log_samples(self, examples, rollouts, scored, shaped) -> None:
        count = min(self.config.logging.samples_per_step, len(rollouts))
        if self.is_main and count:
            records = sample_records(examples, rollouts[:count], scored, shaped)
            self.tracker.log_samples(self.step_index + 1, records)  # the step being completed

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Accuracy, lengths, truncation and format rates on every evaluation set.

        Sampled under its own seed, (training seed, step), with the random state of
        training put back afterwards: evaluating (or not, or more often) never changes
        the training run, and a run's evaluations can be reused (apo compare).
        """
        accelerator = self.accelerator
        device = accelerator.device
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(prompt_seed(self.config.training.seed, self.step_index, EVAL_STREAM))
            return self.evaluation.evaluate(
                self.engine,
                self.config.rollout,
                rank=accelerator.process_index,
                world=accelerator.num_processes,
                gather=gather_object,
            )

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path:
        # The dtype model.dtype resolved to on this device: apo export loads the same.
        dtype = resolve_dtype(self.config.model.dtype, self.accelerator.device)
        state = {
            "step": self.step_index,
            "total_steps": self.total_steps,
            "sampler": self.sampler.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "config": self.config.model_dump(mode="json"),
            "model": self.config.model.name_or_path,
            "dtype": str(dtype).removeprefix("torch."),
        }
        return save_checkpoint(
            self.accelerator,
            self.run_dir / "checkpoints",
            self.step_index,
            state,
            self.config.checkpoint.keep_last,
        )

    def _checkpoint_bytes(self) -> int:
        """About what one checkpoint takes: the saved weights (only the adapter with
        LoRA) and AdamW's two moments per trainable weight."""
        parameters = list(self.accelerator.unwrap_model(self.policy).parameters())
        trainable = sum(p.numel() * p.element_size() for p in parameters if p.requires_grad)
        everything = sum(p.numel() * p.element_size() for p in parameters)
        return (trainable if self.config.lora.enabled else everything) + 2 * trainable

    def _resume(self, path: Path) -> None:
        """Restore a checkpoint (chosen and verified by :func:`resume_point`)."""
        check_resumable(path, read_trainer_state(path)["config"], self.config, warn=self.is_main)
        try:
            state = load_checkpoint(self.accelerator, path)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, KeyError) as error:  # tensors of other shapes or names
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise DamagedCheckpoint(
                f"checkpoint {path} does not fit this model ({type(error).__name__}: {first_line})"
            ) from None
        self.sampler.load_state_dict(state["sampler"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step_index = state["step"]
        self.tracker.truncate_after(self.step_index)
        if self.is_main:
            logger.info("resumed from %s at step %d", path, self.step_index)

    def export_model(self) -> Path:
        """A Hugging Face folder loadable with ``from_pretrained`` (LoRA merged if asked)."""
        target = self.run_dir / "final_model"
        self.accelerator.wait_for_everyone()
        model = self.accelerator.unwrap_model(self.policy)
        state_dict = self.accelerator.get_state_dict(self.policy)
        error = None
        if self.is_main:
            try:
                save_model_folder(
                    model,
                    self.processor,
                    target,
                    merge_lora=self.config.checkpoint.merge_lora,
                    state_dict=state_dict,
                )
            except CheckpointError as caught:
                error = caught
        self.accelerator.wait_for_everyone()
        if any_process_failed(self.accelerator, error):  # every process raises
            checkpoint = self.run_dir / "checkpoints" / checkpoint_name(self.step_index)
            raise CheckpointError(
                f"{error or 'the final model could not be written'}; the checkpoint "
                f"{checkpoint} is intact: `apo export {checkpoint} OUTPUT` writes it later"
            )
        return target

    # ------------------------------------------------------------------ plumbing

    def _should(self, every: int) -> bool:
        return every > 0 and self.step_index % every == 0 and self.step_index < self.total_steps

    def _on_signal(self, signum, frame) -> None:
        if self._stop_signal is not None:  # a second signal: stop now, no checkpoint
            raise StopTraining(SIGNAL_EXIT_CODES[signum], saved=False)
        self._stop_signal = signum
        if self.is_main:
            logger.warning("signal %d: finishing this step, then saving a checkpoint", signum)

    def _stop_requested(self) -> bool:
        flag = torch.tensor(float(self._stop_signal or 0), device=self.accelerator.device)
        flag = float(self.accelerator.reduce(flag, "max"))
        if flag and self._stop_signal is None:
            self._stop_signal = int(flag)
        return bool(flag)

    def _progress(self) -> contextlib.AbstractContextManager:
        """The console: ``advance(metrics)`` after a step, ``evaluate()`` with the bar."""
        return training_progress(
            self.total_steps,
            self.step_index,
            self.config.logging.log_every,
            self.evaluate,
            eval_sets=", ".join(self.evaluation.sets),
            enabled=self.is_main,
        )

    def close(self) -> None:
        self.rewards.close()
        self.evaluation.close()
        self.tracker.close()
        self._lock.close()
