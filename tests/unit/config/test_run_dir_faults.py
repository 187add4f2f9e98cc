"""Run-directory faults: concurrent writers, locks held by live and killed processes, leftovers
of killed exports, file modes (issue 19)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from argsfw.config.compose import compose
from argsfw.config.run_dir import (
    LOCK_NAME,
    RunDir,
    release_locks,
    remove_stale_temps,
    write_json_atomic,
)
from argsfw.errors import UsageError

REPO = Path(__file__).resolve().parents[3]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def test_concurrent_atomic_writes_of_one_file_never_collide(tmp_path):
    # two identical predicts update meta.json at once: with one fixed "<name>.tmp" a writer
    # renamed the other's temporary file away and died with FileNotFoundError
    path = tmp_path / "meta.json"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(200):
                write_json_atomic(path, {"writer": n, "i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert json.loads(path.read_text())["i"] == 199
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]  # no temporary left


def test_atomic_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


_HOLD = """
import sys, time
from pathlib import Path
from argsfw.config.run_dir import RunDir
RunDir(Path(sys.argv[1])).lock()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_held_lock_refuses_and_a_killed_holders_lock_does_not(tmp_path):
    run = RunDir(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run.path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match=rf"in use by argsfw pid {holder.pid} .*choose"):
            run.lock()
        holder.send_signal(signal.SIGKILL)  # no cleanup: the lock file stays behind
        holder.wait(timeout=30)
        assert (run.path / LOCK_NAME).is_file()
        run.lock()  # the kernel released the dead holder's flock
        assert f"pid {os.getpid()}" in (run.path / LOCK_NAME).read_text()
    finally:
        holder.kill()
        holder.wait()
        release_locks()


def test_a_run_of_another_stage_is_refused_before_anything_is_written(tmp_path):
    run = RunDir(tmp_path / "rm_run")
    run.path.mkdir()
    run.meta_path.write_text(json.dumps({"stage": "rm", "recipe": "tiny_rm"}))
    with pytest.raises(UsageError, match="holds a rm run .*not a sft one; choose another run_dir"):
        run.claim(compose(["recipe=tiny_sft", "resume=true"]))
    assert not (run.path / LOCK_NAME).exists()
    run.claim(compose(["recipe=tiny_sft", "overwrite=true"]), clears=True)  # fit deletes it first
    release_locks()


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / f".hf.tmp-{_dead_pid()}"
    mine = tmp_path / f".hf.tmp-{os.getpid()}"
    for d in (dead, mine):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"x")
    assert remove_stale_temps(tmp_path, ".hf.tmp-") == [dead]
    assert not dead.exists() and mine.exists()


_KILLED_EXPORT = """
import os, sys
from pathlib import Path
from argsfw.export import _atomic_write

def write(tmp):
    (tmp / "model.safetensors").write_bytes(b"half")
    os._exit(9)  # killed mid-export: no finally, no cleanup

_atomic_write(Path(sys.argv[1]), write)
"""


def test_a_killed_exports_folder_is_cleaned_and_exports_get_normal_modes(tmp_path, tiny_kit):
    from transformers import AutoModelForCausalLM

    from argsfw.export import _atomic_write

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _KILLED_EXPORT, str(out)], env=env)
    assert proc.returncode == 9
    (left,) = tmp_path.glob(".out.tmp-*")
    model = AutoModelForCausalLM.from_pretrained(tiny_kit["policy"])
    old = os.umask(0o022)
    try:
        _atomic_write(out, lambda tmp: model.save_pretrained(tmp))
    finally:
        os.umask(old)
    assert not left.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert out.stat().st_mode & 0o777 == 0o755
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert set(modes.values()) == {0o644}, modes


def test_every_shipped_recipe_checkpoints_periodically():
    from argsfw.config.compose import available_recipes
    from argsfw.trainer import _checkpoint_callback

    for name in available_recipes():
        job = compose([f"recipe={name}"])
        if job.stage in ("sft", "rm", "ppo", "arm", "token_rm"):
            cb = _checkpoint_callback(job, RunDir(Path("unused")))
            assert cb.minutes == 30.0, name
