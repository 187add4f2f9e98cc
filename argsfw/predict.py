"""`python -m argsfw.predict recipe=NAME key=value ...`: decode prompts into a run directory.

One setting per run directory: ``outputs.jsonl`` (one record per prompt, in dataset order),
then a ``DONE`` marker (see `argsfw.callbacks.outputs` for the files and the resume design).
Re-running the same command resumes; a finished run's re-run is a no-op; outputs of other
settings in the same directory are refused. Settings fan out two ways, one output each:
Hydra multirun (``-m decode.weight=0,1 decode.topk=10,40``: ``<run_dir>/<overrides>/``) and
the original's config file (``decode.config_file=example.config``: ``<run_dir>/config_<i>/``).

Devices: ``trainer.devices=N`` runs Lightning's DDP predict loop, each rank decoding its shard
of the prompts in batches; ``trainer.num_nodes`` with torchrun or SLURM as Lightning runs them.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from argsfw.callbacks.outputs import (
    SETTINGS_KEY,
    OutputState,
    check_settings,
    clear_outputs,
    read_state,
)
from argsfw.cli import run_entry
from argsfw.config.run_dir import RunDir
from argsfw.data.types import DataError
from argsfw.errors import ConfigError
from argsfw.prediction.preflight import ModelFacts, check_inputs, check_prompts_fit
from argsfw.prediction.settings import (
    default_label,
    expand_settings,
    is_token_level,
    needs_reward_model,
    output_settings,
    read_config_file,
)
from argsfw.prediction.summary import finish

__all__ = [  # re-exported: the parts predict is made of
    "ModelFacts", "OutputState", "check_inputs", "check_prompts_fit", "default_label",
    "expand_settings", "finish", "is_global_zero", "main", "needs_reward_model",
    "output_settings", "read_config_file",
]  # fmt: skip

log = logging.getLogger("argsfw.predict")


def is_global_zero() -> bool:
    """True on the global rank-0 process, from the launcher's environment (before Lightning runs).

    Lightning's subprocess launcher sets LOCAL_RANK/NODE_RANK, torchrun RANK, SLURM SLURM_PROCID.
    """
    names = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")
    return all(os.environ.get(n, "0") in ("", "0") for n in names)


def _run(job, run: RunDir) -> None:
    for sub_job, sub_run in expand_settings(job, run):
        predict_one(sub_job, sub_run)


def predict_one(job, run: RunDir) -> dict | None:
    """Decode every prompt of `job` not yet in `run`, merge, mark done; returns the summary (rank 0)."""
    from argsfw.data.loading import load_prompts_with_stats

    if job.strategy.name == "deepspeed":
        raise ConfigError(
            "predict runs data-parallel (each rank holds whole models): use strategy=auto or strategy=ddp"
        )
    zero = is_global_zero()
    state = OutputState() if job.overwrite else read_state(run.path)
    current = output_settings(job)
    if not job.overwrite:
        check_settings(run.path, run.meta().get(SETTINGS_KEY), current, state)
    # a chat-format prompt is rendered by the policy's tokenizer: read it (no weights) first
    facts = check_inputs(job) if job.data.prompt_format == "chat" else None
    records, data_stats = load_prompts_with_stats(job.data, tokenizer=facts and facts.tokenizer)
    if not records:
        raise DataError(
            f"no prompts to decode: data.source={job.data.source} split {job.data.eval_split!r} "
            f"yields none ({data_stats}); check data.path, data.eval_split and data.limit/offset"
        )
    todo = [r for r in records if r.id not in state.done_ids]
    if not todo and state.done:
        log.info("%s is complete (%d prompts); nothing to do", run.outputs_path, len(records))
        return None
    facts = facts or check_inputs(job)
    if not state.records:  # a resumed run that already has outputs is not a run without any
        check_prompts_fit(job, facts, todo)
    run.path.mkdir(parents=True, exist_ok=True)
    if zero:
        run.claim(job)  # before the first write: lock, and no other stage's run
        if job.overwrite:
            clear_outputs(run.path)
        else:  # read again under the lock: a run that held it may have written since
            state = read_state(run.path)
            check_settings(run.path, run.meta().get(SETTINGS_KEY), current, state)
            todo = [r for r in records if r.id not in state.done_ids]
        # DONE says "every prompt is in": never true while this run adds (or a crash loses) some
        run.done_marker.unlink(missing_ok=True)
        run.start(job, "predict")
        run.update_meta(
            **{SETTINGS_KEY: current}, data=data_stats.as_dict(), label=default_label(job)
        )
    t0 = time.perf_counter()
    try:
        logger = _decode(job, run, records, facts.cross_tokenizer) if todo else None
        if not zero:
            return None
        summary = finish(job, run, records, state, time.perf_counter() - t0, logger)
    except BaseException:
        if zero:
            run.finish(status="failed")
        raise
    return summary


def _trainer(job, run: RunDir, callbacks: list, logger):
    import lightning as L
    from lightning.pytorch.strategies import DDPStrategy

    from argsfw.devices import on_cpu, trainer_devices

    t = job.trainer
    devices, n = trainer_devices(t)  # every form trainer.devices takes (argsfw.devices)
    cpu = on_cpu(t.accelerator)
    multi = n > 1 or t.num_nodes > 1
    strategy = DDPStrategy(process_group_backend="gloo" if cpu else None) if multi else "auto"
    return L.Trainer(
        accelerator=t.accelerator,
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=t.precision,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=False,
        limit_predict_batches=t.limit_predict_batches,
        default_root_dir=str(run.path),
        enable_checkpointing=False,
    )


def _decode(job, run: RunDir, records, cross_tokenizer: bool):
    """Run Lightning's predict loop over the prompts still to do; returns the logger (or None)."""
    from argsfw.callbacks.writer import DecodeProgressBar, PartFileWriter, ThroughputLogger
    from argsfw.loggers import build_logger
    from argsfw.modules.decode import DecodeModule, DecodeSpec, PromptsDataModule

    spec = DecodeSpec(
        policy=job.policy,
        reward_model=job.reward_model,
        settings=job.decode,
        dtype=job.model.dtype,
        too_long=job.predict.too_long,
        use_rm=needs_reward_model(job.decode),
        token_level_rm=is_token_level(job.decode),
        cross_tokenizer=cross_tokenizer,
        label=default_label(job),
    )
    callbacks = [PartFileWriter(run.path), ThroughputLogger(job.predict.log_every_n_batches)]
    if job.trainer.enable_progress_bar:
        callbacks.append(DecodeProgressBar())
    logger = build_logger(job.logger, run.path, job.stage, hparams=output_settings(job))
    trainer = _trainer(job, run, callbacks, logger)
    dm = PromptsDataModule(records, run.path, job.decode.batch_size, job.data.num_workers)
    module = DecodeModule(spec)
    trainer.predict(module, datamodule=dm, return_predictions=False)
    if trainer.is_global_zero and module.scorer is not None:
        run.update_meta(scorer=module.scorer)  # which scorer read the RM (argsfw.decoding.probe)
    # why a barrier here and not in on_predict_end: a rank whose shard is empty skips the predict
    # loop (and its hooks) entirely; every rank returns from predict(), so all meet here.
    trainer.strategy.barrier("argsfw_predict_merge")
    return logger


def main(argv=None) -> int:
    """Entry point; returns the exit code (2 for usage errors)."""
    return run_entry("predict", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
