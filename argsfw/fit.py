"""`python -m argsfw.fit recipe=NAME key=value ...`: train one stage (SFT, RM or PPO).

The flow, the same for every stage (the stage itself only builds `StageParts`):

1. refuse an existing run dir unless ``resume=true`` or ``overwrite=true``; write config + meta;
2. seed everything; build the stage (module, datamodule, export, meta);
3. logger, strategy (auto / DDP / DeepSpeed ZeRO, DeepSpeed-on-CPU when there is no GPU),
   Trainer (accumulation derived from ``optim``), checkpoints in ``checkpoints/``;
4. ``trainer.fit`` (resumed from ``checkpoints/last.ckpt`` with ``resume=true``);
5. export ``hf/`` atomically (rank 0; ZeRO-3 parameters gathered first), write
   ``metrics.json`` and close ``meta.json``. A non-finite loss stops the run, exports nothing
   (`argsfw.errors.NonFiniteLossError`, raised by `argsfw.trainer.FiniteLossGuard`).
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from argsfw.cli import run_entry
from argsfw.config.run_dir import (
    LOCK_NAME,
    RunDir,
    atomic_file,
    remove_stale_temps,
    write_dir_atomic,
    write_json_atomic,
)
from argsfw.config.schema import JobConfig
from argsfw.errors import UsageError

log = logging.getLogger("argsfw.fit")


class NothingToTrain(UsageError):
    """A finished run was resumed with limits it already reached (its files are left as they were)."""


def check_run_dir(job: JobConfig, run: RunDir) -> None:
    """Refuse to write into a used run directory unless resuming or overwriting (rank 0 only).

    Raises `UsageError` naming the directory and the options; clears it for ``overwrite=true``.
    """
    if not run.is_rank_zero() or not run.path.exists():
        return
    if not any(p.name != LOCK_NAME for p in run.path.iterdir()):
        return
    looks_like_run = run.config_path.exists() or run.meta_path.exists()
    if job.resume or job.ckpt_path:
        if not looks_like_run:
            raise UsageError(
                f"run_dir {run.path} is not an argsfw run directory; nothing to resume"
            )
        return
    if job.overwrite:
        if not looks_like_run:
            raise UsageError(
                f"run_dir {run.path} is not empty and not an argsfw run; refusing to delete it (choose another run_dir=)"
            )
        log.info("overwrite=true: clearing %s", run.path)
        for p in run.path.iterdir():  # all but the lock this process holds
            if p.name != LOCK_NAME:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        return
    raise UsageError(
        f"run_dir {run.path} already holds a run; pass resume=true to continue it, "
        "overwrite=true to start over, or another run_dir="
    )


def resume_checkpoint(job: JobConfig, run: RunDir) -> str | None:
    """The checkpoint to resume from: ``checkpoints/last.ckpt`` for ``resume=true`` or
    ``ckpt_path=last``, an explicit ``ckpt_path``, or None (fresh start).

    Raises `UsageError` when an explicit checkpoint does not exist.
    """
    last = run.checkpoints_dir / "last.ckpt"
    if job.ckpt_path and job.ckpt_path != "last":
        check_ckpt_path(job.ckpt_path)
        return job.ckpt_path
    if job.resume or job.ckpt_path == "last":
        if last.exists():
            log.info("resuming from %s", last)
            return str(last)
        log.warning("no checkpoint in %s yet: starting from the beginning", run.checkpoints_dir)
    return None


def check_ckpt_path(spec: str) -> None:
    """Refuse an explicit ``ckpt_path`` that is not a Lightning checkpoint, before any model loads.

    Lightning writes ``.ckpt`` files with ``torch.save`` (a zip archive) and ZeRO checkpoints as
    directories holding ``checkpoint/``; anything else fails only in ``trainer.fit``, where
    torch's message advises ``weights_only=False``, wrong for a file that is no checkpoint.
    Raises `UsageError` naming the path and the fix.
    """
    import zipfile

    path = Path(spec)
    fix = "pass a .ckpt file from a run's checkpoints/ folder, or ckpt_path=last"
    if not path.exists():
        raise UsageError(f"ckpt_path {spec!r} does not exist; {fix}")
    if path.is_dir():
        if not (path / "checkpoint").is_dir():
            raise UsageError(
                f"ckpt_path {spec!r} is a folder but not a DeepSpeed checkpoint; {fix}"
            )
        return
    try:  # the pickle holds the dict's keys as plain strings: read them without unpickling
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            keys = z.read(pkl) if pkl else None
    except (zipfile.BadZipFile, OSError):
        keys = None
    if keys is None:
        raise UsageError(
            f"ckpt_path {spec!r} is not a Lightning checkpoint (not a torch.save file, or "
            f"truncated); {fix}"
        )
    if b"pytorch-lightning_version" not in keys or b"state_dict" not in keys:
        raise UsageError(
            f"ckpt_path {spec!r} is a torch file but not a Lightning checkpoint (no "
            f"pytorch-lightning_version or state_dict in it); {fix}"
        )


def check_inputs(job: JobConfig) -> None:
    """Everything about a fit's inputs that can be checked before the run directory is written:
    the stage, model paths and heads, readable weights, tokenizers, data files for each split.

    Raises a usage error (exit code 2) naming the bad input and the fix.
    """
    from argsfw.data.loading import VALIDATION, check_data_files
    from argsfw.modules._models import check_fit_inputs
    from argsfw.stages import find_stage, names

    stage = find_stage(job.stage)
    if stage is None or stage.entry != "fit":
        raise UsageError(
            f"stage {job.stage!r} cannot be fitted; fit stages: {', '.join(names('fit'))}"
        )
    if job.ckpt_path and job.ckpt_path != "last":
        check_ckpt_path(job.ckpt_path)
    check_fit_inputs(job)
    val = VALIDATION if job.data.val_fraction > 0 else job.data.eval_split
    check_data_files(job.data, [job.data.split, val])


def _fit(job: JobConfig, run: RunDir) -> None:
    check_inputs(job)  # before Lightning is imported: bad inputs fail in about a second
    import lightning as L

    from argsfw.modules import build_stage
    from argsfw.trainer import build_trainer

    run.claim(job, clears=job.overwrite)
    check_run_dir(job, run)
    if run.is_rank_zero():
        remove_stale_temps(run.path, ".hf.tmp-")  # a killed export's folder
    before = _snapshot(run)
    run.start(job, "fit")
    L.seed_everything(job.seed, workers=True, verbose=False)
    started = time.monotonic()
    try:
        parts = build_stage(job, run)
        trainer = build_trainer(job, run, parts)
        ckpt = resume_checkpoint(job, run)
        trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=ckpt)
        if trainer.interrupted:
            raise KeyboardInterrupt
        # rank 0 alone read the finished run's meta (other ranks start after it rewrote it)
        finished_before = trainer.strategy.broadcast(before is not None)
        if ckpt and finished_before and not _trained_batches(trainer):
            _restore(run, before)
            raise NothingToTrain(
                f"run_dir {run.path} already finished (step {trainer.global_step}): "
                f"trainer.max_steps={job.trainer.max_steps} / max_epochs={job.trainer.max_epochs} "
                "leave nothing to train; raise them to continue, or pass overwrite=true to start over"
            )
        metrics = final_metrics(trainer, time.monotonic() - started)
        export_hf(trainer, parts, run)
    except NothingToTrain:
        raise
    except BaseException as exc:
        run.finish(
            status="failed",
            error=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        )
        raise
    if run.is_rank_zero() and trainer.is_global_zero:
        write_json_atomic(run.metrics_path, metrics)
        # the pairs / prompts each split read, kept and dropped: what the metrics were measured on
        summary = getattr(parts.datamodule, "summary", None)
        data = {"data": summary()} if summary else {}
        run.finish(status="completed", **parts.meta, **data, final_metrics=metrics)
        # through a temporary file and a rename (was a copy): a reader of hf/ never sees half
        # a meta.json, even from a fit killed while writing it
        write_json_atomic(run.hf_dir / "meta.json", run.meta())
        log.info("fit done: %s -> %s", _summary(metrics), run.hf_dir)


def _snapshot(run: RunDir) -> tuple[str, dict] | None:
    """A completed run's ``config.yaml`` text and meta, to put back if a resume trains nothing."""
    if not run.is_rank_zero():
        return None
    meta = run.meta()
    if meta.get("status") != "completed" or not run.config_path.is_file():
        return None
    return run.config_path.read_text(), meta


def _restore(run: RunDir, before: tuple[str, dict]) -> None:
    if run.is_rank_zero():
        with atomic_file(run.config_path) as f:
            f.write(before[0])
        write_json_atomic(run.meta_path, before[1])


def _trained_batches(trainer) -> int:
    from argsfw.trainer import PeriodicCheckpoint

    return sum(
        cb.batches_this_run for cb in trainer.callbacks if isinstance(cb, PeriodicCheckpoint)
    )


def _summary(metrics: dict[str, float]) -> str:
    keys = [k for k in metrics if k.startswith(("val/", "train/loss"))]
    return ", ".join(
        f"{k}={metrics[k]:.4g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}"
        for k in sorted(keys)
    )


def final_metrics(trainer, seconds: float) -> dict[str, float]:
    """Flat final metrics (``train/loss``, ``val/reward_acc`` …) plus step count and wall time."""
    out: dict[str, float] = {}
    for key, value in trainer.callback_metrics.items():
        v = float(value)
        out[key] = v if math.isfinite(v) else str(v)
    out["trainer/global_step"] = int(trainer.global_step)
    out["trainer/epoch"] = int(trainer.current_epoch)
    out["time/fit_seconds"] = round(seconds, 2)
    return out


def export_hf(trainer, parts, run: RunDir) -> None:
    """Write ``run.hf_dir`` from the trained module, atomically (temp dir, then rename).

    Under ZeRO-3 every rank joins the parameter gather; only rank 0 writes.
    """
    from argsfw.strategies import zero_stage

    module = parts.module
    if zero_stage(trainer.strategy) == 3:
        import deepspeed

        params = list(module.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            if trainer.is_global_zero:
                _export_to(parts, module, run)
    elif trainer.is_global_zero:
        _export_to(parts, module, run)
    trainer.strategy.barrier("argsfw-export")


def _export_to(parts, module, run: RunDir) -> None:
    def write(tmp: Path) -> None:
        parts.export(module, tmp)
        if run.config_path.exists():
            shutil.copy2(run.config_path, tmp / "config.yaml")

    write_dir_atomic(run.hf_dir, write)


def _run(job: JobConfig, run: RunDir) -> None:
    _fit(job, run)


def main(argv: Any = None) -> int:
    """Entry point; returns the exit code (2 for usage errors)."""
    return run_entry("fit", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
