"""Run directories: the contract that chains stages.

Every entry point writes into one run directory: the resolved ``config.yaml`` (secrets
redacted), ``meta.json`` (code version, base model, tokenizer, max length, start/end time,
status) and its artefacts — fit: ``hf/`` and ``metrics.json``; predict: ``outputs.jsonl`` and
a ``DONE`` marker; evaluate: ``report.json``, ``report.md`` and ``plots/``. A later stage
names the directory (``policy=runs/tiny_sft``) and picks up ``hf/``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

import argsfw

_SECRET_KEY = re.compile(r"(^|_)(api_?key|apikey|token|secret|password|passwd)$", re.IGNORECASE)
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
REDACTED = "***redacted***"


def secret_values() -> list[str]:
    """Values of environment variables whose names look secret (API keys, tokens …)."""
    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]


def redact(obj: Any) -> Any:
    """A copy of a config tree with secret-looking keys and any secret env value masked."""
    secrets = secret_values()
    if isinstance(obj, dict):
        return {
            k: REDACTED if _SECRET_KEY.search(str(k)) and v else redact(v) for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, REDACTED)
    return obj


def code_version() -> str:
    """argsfw's version plus the git commit (and ``-dirty``) when run from a checkout."""
    root = Path(argsfw.__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{argsfw.__version__}+{sha}" if sha else argsfw.__version__


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def global_rank() -> int:
    """This process's global rank from the launcher's environment (0 when not distributed).

    Same variables and order as Lightning's own rank lookup (torchrun/DDP, SLURM, LSF), read
    here without importing Lightning so the CLI stays fast.
    """
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key) is not None:
            return int(os.environ[key])
    return 0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class RunDir:
    """One run's directory and the well-known files in it."""

    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    @property
    def hf_dir(self) -> Path:
        return self.path / "hf"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def outputs_path(self) -> Path:
        return self.path / "outputs.jsonl"

    @property
    def done_marker(self) -> Path:
        return self.path / "DONE"

    def is_rank_zero(self) -> bool:
        return global_rank() == 0

    def meta(self) -> dict[str, Any]:
        """The current ``meta.json`` (empty when none was written yet)."""
        return json.loads(self.meta_path.read_text()) if self.meta_path.is_file() else {}

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into ``meta.json`` (rank 0 only) and return the result."""
        meta = {**self.meta(), **fields}
        if self.is_rank_zero():
            write_json_atomic(self.meta_path, meta)
        return meta

    def start(self, job, entry: str) -> None:
        """Create the directory, write the redacted resolved config and the opening meta."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.is_rank_zero():
            return
        tree = redact(OmegaConf.to_container(OmegaConf.structured(job), resolve=True))
        self.config_path.write_text(OmegaConf.to_yaml(OmegaConf.create(tree)))
        self.update_meta(
            entry=entry,
            stage=job.stage,
            recipe=job.recipe,
            code_version=code_version(),
            command=redact(
                " ".join([os.path.basename(sys.executable), "-m", f"argsfw.{entry}", *sys.argv[1:]])
            ),
            host=socket.gethostname(),
            started=_now(),
            finished=None,
            status="running",
        )

    def finish(self, status: str = "completed", **fields: Any) -> None:
        """Record the end time and final status (``completed`` or ``failed``)."""
        self.update_meta(finished=_now(), status=status, **fields)


def default_run_dir(job, suffix: str = "") -> Path:
    """``runs/<recipe>`` (``runs/<recipe>/<sweep overrides>`` inside a sweep) unless set."""
    base = Path(job.run_dir) if job.run_dir else Path("runs") / job.recipe
    return base / suffix if suffix else base
