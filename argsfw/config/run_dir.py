"""Run directories: the contract that chains stages.

Every entry point writes into one run directory: the resolved ``config.yaml`` (secrets
redacted), ``meta.json`` (code version, base model, tokenizer, max length, start/end time,
status) and its artefacts — fit: ``hf/`` and ``metrics.json``; predict: ``outputs.jsonl`` and
a ``DONE`` marker; evaluate: ``report.json``, ``report.md`` and ``plots/``. A later stage
names the directory (``policy=runs/tiny_sft``) and picks up ``hf/``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def umask_mode(mode: int = 0o666) -> int:
    """`mode` less the process umask: what ``open()`` / ``mkdir()`` would give a new file or dir."""
    try:  # Linux: read it; setting and restoring the umask would race other threads' files
        status = Path("/proc/self/status").read_text()
        mask = int(re.search(r"^Umask:\s*([0-7]+)", status, re.MULTILINE).group(1), 8)
    except (OSError, AttributeError):
        mask = os.umask(0)
        os.umask(mask)
    return mode & ~mask


@contextmanager
def atomic_file(path: Path, encoding: str = "utf-8") -> Iterator[Any]:
    """Open a text file that replaces `path` in one rename once the block ends without error.

    Why `tempfile` in the same directory: a fixed ``<name>.tmp`` is shared by every process
    writing `path` (two identical predicts: one renames the other's file away and dies with
    FileNotFoundError); the same directory keeps ``os.replace`` atomic. tempfile creates mode
    0600, so the file gets the mode a plain ``open()`` would (0644 under umask 022).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, umask_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON via a temporary file and rename, so readers never see half a file."""
    with atomic_file(path) as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_dir_atomic(out: Path, write: Callable[[Path], Any]) -> Path:
    """Fill a folder with ``write(tmp)`` and swap it in for `out` in one rename; returns `out`.

    A killed writer leaves only a ``.<name>.tmp-<pid>-*`` folder, removed by the next writer
    once that pid is gone; the result gets the modes a plain ``mkdir``/``open`` would.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}.tmp-"
    remove_stale_temps(out.parent, prefix)  # left by a killed writer (its pid is in the name)
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=out.parent))
    try:
        write(tmp)
        give_normal_modes(tmp)  # 0644 / 0755 under umask 022, not tempfile's 0600 / 0700
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def give_normal_modes(tree: Path) -> None:
    """Set every file under `tree` to 0666 and every folder to 0777, less the umask.

    Why: safetensors writes the weights through a 0600 temporary file and `tempfile.mkdtemp`
    makes 0700 folders, so an export was unreadable to the group where every other file of the
    run (config, tokenizer) was readable.
    """
    files, dirs = umask_mode(0o666), umask_mode(0o777)
    os.chmod(tree, dirs)
    for root, subdirs, names in os.walk(tree):
        for d in subdirs:
            os.chmod(os.path.join(root, d), dirs)
        for n in names:
            os.chmod(os.path.join(root, n), files)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temps(directory: Path, prefix: str) -> list[Path]:
    """Delete ``<prefix><pid>…`` entries of `directory` whose process is gone; return them.

    Fit and export write through ``.hf.tmp-<pid>`` / ``.<out>.tmp-<pid>-…`` folders; a killed
    process leaves its folder behind. One whose pid still runs is kept (it may be writing).
    """
    removed = []
    for p in Path(directory).glob(f"{prefix}*"):
        m = re.match(r"(\d+)", p.name[len(prefix) :])
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


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


LOCK_NAME = ".argsfw.lock"
_HELD: dict[Path, Any] = {}  # run dir -> open lock file, held until release_locks()


def release_locks() -> None:
    """Release every run-directory lock this process holds (the entry point's job is done)."""
    while _HELD:
        _, f = _HELD.popitem()
        f.close()  # closing the file drops the flock


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
        with atomic_file(self.config_path) as f:
            f.write(OmegaConf.to_yaml(OmegaConf.create(tree)))
        # a resumed run starts clean of how the previous attempt ended (its error, its failed
        # step): a completed run's meta must not still carry an old SIGTERM's error
        meta = self.meta()
        ended = ("error", "failed_step")
        if any(k in meta for k in ended):
            write_json_atomic(self.meta_path, {k: v for k, v in meta.items() if k not in ended})
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

    def claim(self, job, clears: bool = False) -> None:
        """Lock this directory for this process and refuse a run of another stage in it.

        Call before the entry point's first write; `clears`: this run deletes the directory
        first (fit with ``overwrite=true``), so another stage's run in it is no conflict. Raises `UsageError` (exit code 2) when
        another process holds the lock, or when ``meta.json`` records a different stage (a
        resumed RM run must not have its config and meta overwritten by an SFT fit).
        """
        from argsfw.errors import UsageError

        if not self.is_rank_zero():  # the other ranks are rank 0's children: it holds the lock
            return
        stage = self.meta().get("stage") if self.meta_path.is_file() else None
        if stage and job.stage and stage != job.stage and not clears:
            raise UsageError(
                f"run_dir {self.path} holds a {stage} run (recipe {self.meta().get('recipe')}), "
                f"not a {job.stage} one; choose another run_dir= for this {job.stage} run"
            )
        self.lock()

    def lock(self) -> None:
        """Take the exclusive lock on ``<run_dir>/.argsfw.lock`` (creating the directory).

        Why flock (`fcntl`) and not the `filelock` package: it is the same call underneath, and
        the kernel drops it when the holder dies, so a killed run's lock never blocks the next
        one; only the file, which is harmless, stays. Raises `UsageError` when another process
        holds it.
        """
        from argsfw.errors import UsageError

        key = self.path.resolve()
        if key in _HELD:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.path / LOCK_NAME, "a+")  # noqa: SIM115 - held open until release_locks()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                f.close()
                raise
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise UsageError(
                f"run_dir {self.path} is in use by {holder}; wait for it to finish, or choose "
                "another run_dir="
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"argsfw pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        _HELD[key] = f

    def finish(self, status: str = "completed", **fields: Any) -> None:
        """Record the end time and final status (``completed`` or ``failed``)."""
        self.update_meta(finished=_now(), status=status, **fields)


def default_run_dir(job, suffix: str = "") -> Path:
    """``runs/<recipe>`` (``runs/<recipe>/<sweep overrides>`` inside a sweep) unless set."""
    base = Path(job.run_dir) if job.run_dir else Path("runs") / job.recipe
    return base / suffix if suffix else base
