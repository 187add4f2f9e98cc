"""Experiment loggers for every stage: W&B (offline without a key), CSV, TensorBoard or none."""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
from pathlib import Path

from argsfw.config.run_dir import atomic_file, global_rank
from argsfw.errors import ConfigError

log = logging.getLogger(__name__)


def wandb_mode(requested: str) -> str:
    """Resolve ``auto`` to ``online`` when an API key is available, else ``offline``.

    An explicit ``WANDB_MODE`` in the environment wins, so tests and CI can say ``disabled``.
    """
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        import netrc

        hosts = netrc.netrc().hosts
        if any("wandb" in h for h in hosts):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


_WANDB_DIRS = {"WANDB_CONFIG_DIR": "config", "WANDB_CACHE_DIR": "cache", "WANDB_DATA_DIR": "data"}


def wandb_home_fallback(run_dir: Path) -> None:
    """Point W&B's settings, cache and data folders into `run_dir` when HOME is not writable.

    Why: W&B keeps them under HOME, and when it cannot create them its service prints a dozen
    log lines around the one error. This logs one warning line instead, and logging still works.
    """
    if all(os.environ.get(n) for n in _WANDB_DIRS):
        return
    home = Path(os.path.expanduser("~"))
    try:
        with tempfile.TemporaryFile(dir=home):
            return
    except OSError:
        pass
    base = Path(run_dir) / "wandb_home"
    for name, sub in _WANDB_DIRS.items():
        if not os.environ.get(name):
            (base / sub).mkdir(parents=True, exist_ok=True)
            os.environ[name] = str(base / sub)
    log.warning(
        "HOME (%s) is not writable: W&B keeps its settings and cache in %s for this run; "
        "set HOME or WANDB_CACHE_DIR to a writable folder to choose another place",
        home,
        base,
    )


RUN_ID_FILE = "wandb_run_id"  # the run directory's W&B run id, beside meta.json
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of `run_dir`: the one in its ``wandb_run_id`` file, else a new random one.

    Why a stored random id and not one derived from the path: ``overwrite=true`` (which deletes
    the file with the rest of the run) must start a new W&B run, not append to the old one's
    history, and two run directories with the same path on two machines are two runs. A resumed
    run keeps its directory and so its id. Only rank 0 writes the file (atomically).
    """
    path = Path(run_dir) / RUN_ID_FILE
    run_id = path.read_text().strip() if path.is_file() else ""
    if run_id:
        if not _RUN_ID.fullmatch(run_id):
            raise ConfigError(
                f"{path} holds {run_id[:80]!r}, not a W&B run id (letters, digits, _ or -); "
                "delete the file to start a new W&B run"
            )
        return run_id
    run_id = secrets.token_hex(8)
    if global_rank() == 0:
        with atomic_file(path) as f:
            f.write(run_id + "\n")
    return run_id


def wandb_names(cfg, run_dir: Path, stage: str) -> dict:
    """W&B ``name``, ``group`` and ``job_type`` of a `stage` run in `run_dir` (`cfg`: LoggerConfig).

    The name defaults to the run directory's name, prefixed with the stage unless it names it
    already (``runs/tiny_sft``: ``tiny_sft``; a pipeline's ``predict/greedy``: ``predict-greedy``).
    """
    name = cfg.run_name
    if not name:
        base = Path(run_dir).resolve().name
        name = (
            base
            if re.search(rf"(^|[^A-Za-z0-9]){re.escape(stage)}($|[^A-Za-z0-9])", base)
            else f"{stage}-{base}"
        )
    return {"name": name, "group": cfg.group or None, "job_type": stage or None}


def build_logger(cfg, run_dir: Path, stage: str, hparams: dict | None = None):
    """A Lightning logger for `cfg` (a `LoggerConfig`) of a `stage` run under `run_dir`, or None."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    if cfg.name == "none":
        return None
    if cfg.name == "csv":
        logger = CSVLogger(save_dir=str(run_dir), name="logs", version="")
    elif cfg.name == "tensorboard":
        logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    else:
        mode = wandb_mode(cfg.mode)
        if mode != "disabled":
            wandb_home_fallback(run_dir)
        log.info("W&B logging in %s mode (run dir %s)", mode, run_dir)
        logger = WandbLogger(
            project=cfg.project,
            entity=cfg.entity,
            save_dir=str(run_dir),
            mode=mode,
            tags=list(cfg.tags) or None,
            id=wandb_run_id(run_dir),
            resume="allow",
            **wandb_names(cfg, run_dir, stage),
        )
    if hparams:
        logger.log_hyperparams(hparams)
    return logger
