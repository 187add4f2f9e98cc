"""Running ``python -m argsfw.<entry>`` from tests: as a subprocess where the process is the
subject (exit codes, signals, locks, kills, several ranks), or its ``main`` in this process where
the job's result is (`run_here`, `fit_here`): that saves the ~8 s of CPU each process spends
importing torch, transformers and Lightning. Never a multi-process Trainer inside pytest.
"""

from __future__ import annotations

import contextlib
import importlib
import io
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


def run_here(module: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``argsfw.<module>.main(ARGS)`` in this process, for single-device jobs; the exit code,
    and what it printed, in the form `run_module` returns (raises on failure if `check`).

    What the entry point changes in ``os.environ`` (thread counts, Lightning's seed variables)
    is put back, so later tests and their subprocesses see the environment they had.
    """
    if any(a.startswith("trainer.devices=") and a != "trainer.devices=1" for a in args):
        raise AssertionError(f"a multi-process run must be a subprocess: {args}")
    main = importlib.import_module(f"argsfw.{module}").main
    out, err, saved = io.StringIO(), io.StringIO(), dict(os.environ)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    proc = subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"{module} failed ({code}):\n{proc.stderr[-4000:]}")
    return proc


def fit_here(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``argsfw.fit.main(ARGS)`` in this process (see `run_here`)."""
    return run_here("fit", *args, check=check)


def metrics(run_dir: Path) -> dict:
    """The run's metrics.json."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())
