"""Running `python -m argsfw.fit` as a subprocess from tests (never a multi-process Trainer in pytest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# a small model and short runs: the recipes' shapes, scaled down for CI
SMALL = [
    "model.tiny.hidden_size=32",
    "model.tiny.intermediate_size=64",
    "model.tiny.num_heads=2",
    "trainer.enable_progress_bar=false",
    "data.limit=96",
    "optim.batch_size=8",
    "optim.micro_batch_size=8",
    "optim.warmup_steps=0",
    "trainer.limit_val_batches=2",
]

# The final metrics every reward-model fit writes to metrics.json.
RM_METRICS = ("train/loss", "val/loss", "val/reward_acc", "val/reward_gap", "val/prefix_reward_acc")


def env(**extra: str) -> dict[str, str]:
    """The test environment (offline hub, CPU DeepSpeed) plus `extra`; a None value removes a key."""
    e = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "DS_ACCELERATOR": "cpu"}
    for k, v in extra.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


def run_module(
    module: str, *args: str, timeout: float = 240, check: bool = True, env_extra: dict | None = None
):
    """Run ``python -m argsfw.<module> ARGS``; return the CompletedProcess (raises on failure if `check`)."""
    proc = subprocess.run(
        [sys.executable, "-m", f"argsfw.{module}", *args],
        cwd=REPO,
        env=env(**(env_extra or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def fit(*args: str, timeout: float = 240, check: bool = True, env_extra: dict | None = None):
    """Run ``python -m argsfw.fit ARGS`` (see `run_module`)."""
    return run_module("fit", *args, timeout=timeout, check=check, env_extra=env_extra)


def metrics(run_dir: Path) -> dict:
    """The run's metrics.json."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())
