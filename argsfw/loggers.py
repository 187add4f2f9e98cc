"""Experiment loggers for every stage: W&B (offline without a key), CSV, TensorBoard or none."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

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


def build_logger(cfg, run_dir: Path, run_name: str, hparams: dict | None = None):
    """A Lightning logger for `cfg` (a `LoggerConfig`) writing under `run_dir`, or None."""
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
            name=run_name,
            save_dir=str(run_dir),
            mode=mode,
            tags=list(cfg.tags) or None,
            id=_stable_run_id(run_dir),
            resume="allow",
        )
    if hparams:
        logger.log_hyperparams(hparams)
    return logger


def _stable_run_id(run_dir: Path) -> str:
    # One W&B run per run directory, so a resumed fit continues the same W&B run.
    import hashlib

    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
