"""Building the Lightning Trainer of a fit stage: strategy, accumulation, checkpoints, guards.

Everything here is shared by all stages; `argsfw.fit` calls `build_trainer` once per run.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from argsfw.config.run_dir import RunDir
from argsfw.config.schema import JobConfig
from argsfw.devices import trainer_devices
from argsfw.errors import NonFiniteLossError
from argsfw.loggers import build_logger
from argsfw.modules._resume import RNGState, make_resumable
from argsfw.strategies import build_strategy, world_size

log = logging.getLogger(__name__)


class FiniteLossGuard(Callback):
    """Stops the run before the backward pass of a NaN/inf loss, naming the step and batch.

    Why a callback: ``on_before_backward`` fires for automatic and manual optimization alike,
    before any parameter is touched, so nothing non-finite reaches a checkpoint or the export.
    """

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            batch = trainer.fit_loop.epoch_loop.batch_idx
            raise NonFiniteLossError(
                f"loss is {loss.item()} at global step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}, batch {batch}); nothing exported — lower optim.lr "
                "or check the data of that batch"
            )


class ValidateAtMaxSteps(Callback):
    """Asks the loop to stop (which runs validation) when ``max_steps`` ends an epoch early.

    Why: Lightning validates at epoch ends and every ``val_check_interval``; a run cut by
    ``trainer.max_steps`` would otherwise end without final validation metrics.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class PeriodicCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` (epoch ends, every N steps) that also saves every `minutes` of training
    and at the step that reaches ``trainer.max_steps``; counts the batches this process trained.

    Why a subclass: Lightning allows one trigger per ModelCheckpoint (steps *or* time). Why a
    save at max_steps: a run cut there mid-epoch would otherwise only save at the (early) epoch
    end, a checkpoint that marks the epoch finished, so resuming it with a larger max_steps
    trained nothing; saved at the batch, the epoch-end save is skipped (same step) and the
    resume continues the epoch. Every checkpoint records the stage that wrote it, which
    `argsfw.export` checks against the config it is exported with.
    """

    def __init__(self, minutes: float = 0.0, stage: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minutes = float(minutes)
        self.stage = stage
        self.batches_this_run = 0
        self._timer = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        self._timer = time.monotonic()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        from argsfw.export import STAGE_KEY

        if self.stage:
            checkpoint[STAGE_KEY] = self.stage

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.batches_this_run += 1
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._should_skip_saving_checkpoint(trainer):  # e.g. saved at this step already
            return
        due = self.minutes > 0 and time.monotonic() - self._timer >= self.minutes * 60
        # a SIGTERM'd fit (a pipeline stopped, a preempted job) saves at this batch's end, before
        # Lightning stops it after the hook: the resume loses no step (it had restarted from the
        # last periodic save, or from step 0 before the first)
        due = due or bool(getattr(trainer, "received_sigterm", False))
        # clocks and signals differ across ranks: rank 0 decides, or a save would hang
        due = trainer.strategy.broadcast(due)
        if due or 0 < trainer.max_steps <= trainer.global_step:
            self._timer = time.monotonic()
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)


def _checkpoint_callback(job: JobConfig, run: RunDir) -> PeriodicCheckpoint:
    every = job.trainer.checkpoint_every_n_steps
    return PeriodicCheckpoint(
        minutes=job.trainer.checkpoint_every_minutes,
        stage=job.stage,
        dirpath=str(run.checkpoints_dir),
        filename="step{step:06d}",
        auto_insert_metric_name=False,
        save_last=True,
        save_top_k=1,
        every_n_train_steps=every if every > 0 else None,
        save_on_train_epoch_end=True,
    )


def _resumable_train_data(datamodule, seed: int, trainer: L.Trainer) -> None:
    # Why patch the instance: the stage's DataModule builds ordinary loaders; the train loader is
    # rebuilt around a seeded, skippable sampler so a resumed run continues at the same batch.
    original = datamodule.train_dataloader

    def train_dataloader():
        lengths = None
        if getattr(getattr(datamodule, "cfg", None), "group_by_length", False):
            lengths = datamodule.lengths(datamodule.cfg.split)
        loader = make_resumable(original(), seed, lengths)
        loader.progress = lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return loader

    datamodule.train_dataloader = train_dataloader


def trainer_kwargs(job: JobConfig, manual_optimization: bool) -> dict[str, Any]:
    """`lightning.Trainer` keyword arguments from the typed `TrainerConfig` and `OptimConfig`.

    Accumulation is derived (global batch / (micro batch × world size)); a manually optimised
    stage (PPO) accumulates and clips itself, so both are left to it.
    """
    t = job.trainer
    accumulation = job.optim.accumulation(world_size(t))
    kwargs = dict(
        accelerator=t.accelerator,
        devices=trainer_devices(t)[0],
        num_nodes=t.num_nodes,
        precision=t.precision,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        gradient_clip_val=None if manual_optimization else t.gradient_clip_val,
        accumulate_grad_batches=1 if manual_optimization else accumulation,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        log_every_n_steps=t.log_every_n_steps,
        num_sanity_val_steps=t.num_sanity_val_steps,
        enable_progress_bar=t.enable_progress_bar,
        deterministic=t.deterministic,
    )
    for key in (
        "val_check_interval",
        "limit_train_batches",
        "limit_val_batches",
        "limit_predict_batches",
    ):
        if getattr(t, key) is not None:
            kwargs[key] = getattr(t, key)
    return kwargs


def progress_bars(enabled: bool, stream=None) -> list[Callback]:
    """The fit's progress bar when its output is not a terminal (a pipeline step's log, nohup,
    a batch job): Lightning's TQDM bar, which writes every update to the file. Lightning would
    pick its Rich bar when rich is installed, and Rich, off a terminal, shows the bar only when
    the fit ends. On a terminal: none here, Lightning's own choice."""
    import sys

    from lightning.pytorch.callbacks import TQDMProgressBar

    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return [TQDMProgressBar()] if enabled and not (isatty and isatty()) else []


def build_trainer(job: JobConfig, run: RunDir, parts) -> L.Trainer:
    """The Trainer for one fit: logger, strategy, checkpoints, guards, exact-resume data."""
    manual = not parts.module.automatic_optimization
    kwargs = trainer_kwargs(job, manual)
    log.info(
        "global batch %d = micro batch %d x devices %d x accumulation %d",
        job.optim.batch_size,
        job.optim.micro_batch_size,
        world_size(job.trainer),
        kwargs["accumulate_grad_batches"],
    )
    logger = build_logger(job.logger, run.path, job.stage, hparams=_hparams(job))
    trainer = L.Trainer(
        **kwargs,
        strategy=build_strategy(job.strategy, job.trainer),
        logger=logger if logger is not None else False,
        callbacks=[
            FiniteLossGuard(),
            ValidateAtMaxSteps(),
            RNGState(),
            _checkpoint_callback(job, run),
            *progress_bars(job.trainer.enable_progress_bar),
        ],
        default_root_dir=str(run.path),
    )
    _resumable_train_data(parts.datamodule, job.seed, trainer)
    return trainer


def _hparams(job: JobConfig) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from argsfw.config.run_dir import redact

    return redact(OmegaConf.to_container(OmegaConf.structured(job), resolve=True))
