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
gradients as one process with the same global batch. How the processes share
gradients (one process, DDP, FSDP2, DeepSpeed) is the backend's business
(:mod:`apo.distributed`), chosen once in :meth:`Trainer.setup`.
"""

from __future__ import annotations

import contextlib
import logging
from functools import partial
from pathlib import Path

import torch
from accelerate.utils import set_seed

from apo.agreement import AgreedFailure
from apo.algorithms import shape_advantages, trained_responses
from apo.batching import StepBatcher, prompt_seed, rank_positions
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
from apo.distributed import build_accelerator, prepare
from apo.evaluation.training import PeriodicEvaluation
from apo.export import save_model_folder
from apo.models import apply_lora, build_reference, load_model, resolve_dtype
from apo.optim import build_optimizer
from apo.out_of_memory import OutOfMemory
from apo.preflight import check_inputs_exist, check_resumable, claim_run_folder, resume_point
from apo.progress import training_progress
from apo.rewards import RewardRunner
from apo.rollout import RolloutEngine, build_engine
from apo.tracking import RunTracker, sample_records
from apo.training.failures import (
    NonFiniteTraining,
    RewardFailure,
    RewardFailureStreak,
    TrainingFailure,
)
from apo.training.log_probs import LogProbPasses
from apo.training.rollouts import RolloutCollector
from apo.training.step_metrics import loss_metrics, step_rollout_metrics
from apo.training.stopping import GracefulStop, StopTraining
from apo.training.timing import PhaseTimer
from apo.training.update import PolicyUpdate, equal_micro_batch_counts

__all__ = ["NonFiniteTraining", "RewardFailure", "StopTraining", "Trainer", "TrainingFailure"]

logger = logging.getLogger(__name__)

EVAL_STREAM = 2**40  # evaluation seeds: prompt_seed(seed, step, EVAL_STREAM), apart from prompts


class Trainer:
    """Wires the components from a :class:`TrainConfig` and runs the loop."""

    def __init__(self, config: TrainConfig, resume: str | bool | None = None) -> None:
        self.config = config
        self.accelerator = build_accelerator(config.training.precision)
        self.is_main = self.accelerator.is_main_process
        self.run_dir = Path(config.logging.output_dir)
        set_seed(config.training.seed, device_specific=True)  # + process index

        check_inputs_exist(config, resume)  # before the (possibly long) model load
        # One run per folder: the main process holds its lock until close().
        overwrite = config.logging.overwrite and not resume
        self._lock = (
            claim_run_folder(self.run_dir, overwrite) if self.is_main else contextlib.ExitStack()
        )
        try:  # a damaged checkpoint is named now, not after the model has loaded
            checkpoint = resume_point(
                self.run_dir, resume, self.accelerator.num_processes, warn=self.is_main
            )
            self.setup(config, checkpoint)
        except BaseException:
            self._lock.close()
            raise

    def setup(self, config: TrainConfig, checkpoint: Path | None) -> None:
        """Load and wire the model, reference, data, rewards, optimizer, backend, engine
        and the step's components; then restore ``checkpoint`` if given."""
        # --- model, reference, data, rewards
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
        positions = rank_positions(
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

        # --- optimisation, over this run's processes (the backend: apo.distributed)
        self.total_steps = config.total_steps(len(self.dataset))
        total_updates = self.total_steps * config.updates_per_step * config.algorithm.ppo_epochs
        optimizer, scheduler = build_optimizer(
            policy, config.optim, total_updates, self.accelerator.device.type
        )
        self.policy, self.optimizer, self.backend = prepare(
            self.accelerator, config, policy, optimizer
        )
        # Not prepared: accelerate would step it once per process. Its state goes in
        # trainer_state.json: accelerate would pickle it and load it with code allowed.
        self.scheduler = scheduler

        # --- the step's components
        self.engine: RolloutEngine = build_engine(
            config.rollout.engine, self.policy, self.processor, self.tokenizer, self.is_multimodal
        )
        self.engine.record_logprobs = config.algorithm.importance_sampling != "off"
        self.rollouts = RolloutCollector(
            config, self.dataset, self.sampler, positions, self.engine, self.rewards, self.backend
        )
        self.reward_failures = RewardFailureStreak(config.rewards.max_failing_steps)
        self.batcher = StepBatcher(
            self.processor,
            self.tokenizer.pad_token_id,
            self.is_multimodal,
            self.accelerator.device,
            share_prompts=config.batch.share_prompts,
        )
        self.log_probs = LogProbPasses(
            config, self.policy, self.reference, self.batcher, self.backend, self.is_main
        )
        self.update = PolicyUpdate(
            config,
            self.policy,
            self.optimizer,
            self.scheduler,
            self.batcher,
            self.backend,
            self.is_main,
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
        self.stopping = GracefulStop(announce=self.is_main)
        if checkpoint is None:
            # every record of an earlier attempt that never saved, its start evaluation too
            self.tracker.truncate_after(-1)
        else:
            self._resume(checkpoint)
        if self.is_main:  # only now: a refused resume leaves the run's config as it was
            (self.run_dir / "config.yaml").write_text(config_to_yaml(config))

    # ------------------------------------------------------------------ the loop

    def train(self) -> Path | None:
        """Train to the last step; returns the exported model folder (if any)."""
        with self.stopping.handling_signals(close=self.close):
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
                        self._step_and_log(progress)
                    if self.config.eval.every or self.config.eval.at_start:
                        self.tracker.log(self.step_index, progress.evaluate())
                self.save_checkpoint()
                return self.export_model() if self.config.checkpoint.export_final_model else None
            except StopTraining as stop:
                if not stop.saved and self.is_main:  # stopped mid-step, maybe mid-save
                    clean_staging(self.run_dir / "checkpoints")
                raise

    def _step_and_log(self, progress) -> None:
        """One step, its metrics logged; then evaluate, stop or save when it is time."""
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
        if self.stopping.requested(lambda flag: self.backend.reduce(flag, "max")):
            self.save_checkpoint()
            raise self.stopping.stop()
        if self._should(self.config.checkpoint.every):
            self.save_checkpoint()

    def step(self) -> dict[str, float]:
        """One rollout and its updates; returns this step's metrics (all processes)."""
        cfg, timer = self.config, PhaseTimer()
        with timer.phase("time/step"):
            # 1.-3. this process's prompts, G responses to each, their scores; with
            # dynamic sampling, more rounds until the step has its groups with varied
            # rewards (a failure on one process stops every process, with its message)
            self.batcher.new_step()
            step = self.rollouts.collect(self.step_index, timer)
            rollouts, scored = step.rollouts, step.scored
            self.reward_failures.check(
                scored.failures, step.generated, lambda t: self.backend.reduce(t, "sum")
            )

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
            with timer.phase("time/batching"):
                updates = self.batcher.updates(
                    step.prompts,
                    rollouts,
                    shaped.advantages,
                    shaped.kl_weights,
                    keep,
                    cfg.updates_per_step,
                    self.update.micro_batch_size,
                    self.update.max_tokens,
                )
                if cfg.batch.max_tokens_per_micro_batch:  # as many on every process
                    equal_micro_batch_counts(updates, self.backend, self.batcher)
            with timer.phase("time/reference"):
                self.log_probs.fill(updates, self.step_index + 1)

            # 6. the updates
            with timer.phase("time/update"):
                sums = self.update.run(updates, self.step_index + 1)
                self.engine.sync_weights()
        self.batcher.new_step()

        # 7. metrics of the whole step, over all processes
        metrics = step_rollout_metrics(
            rollouts,
            scored,
            shaped,
            keep,
            timer.times,
            cfg.rollout.group_size,
            cfg.algorithm,
            self.backend,
        )
        updates_run = cfg.updates_per_step * cfg.algorithm.ppo_epochs
        metrics |= step.metrics | loss_metrics(sums, updates_run, self.backend)
        metrics["optim/lr"] = self.scheduler.get_last_lr()[0]
        count = min(cfg.logging.samples_per_step, len(rollouts))
        if self.is_main and count:
            examples = [self.dataset.examples[i] for i in step.indices]
            records = sample_records(examples, rollouts[:count], scored, shaped)
            self.tracker.log_samples(self.step_index + 1, records)  # the step being completed
        return metrics

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Accuracy, lengths, truncation and format rates on every evaluation set.

        Sampled under its own seed, (training seed, step), with the random state of
        training put back afterwards: evaluating (or not, or more often) never changes
        the training run, and a run's evaluations can be reused (apo compare).
        """
        device = self.accelerator.device
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(prompt_seed(self.config.training.seed, self.step_index, EVAL_STREAM))
            return self.evaluation.evaluate(
                self.engine,
                self.config.rollout,
                rank=self.accelerator.process_index,
                world=self.backend.processes,
                gather=self.backend.gather_objects,
                record=partial(self.tracker.log_eval_rows, self.step_index),
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
