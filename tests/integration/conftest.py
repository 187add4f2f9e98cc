"""Runs shared by several integration tests, each made once per session; 2-process tests one
at a time.

`tiny_pipeline` is `make demo` scaled down (`_tiny_pipeline_build.py`): its runs serve the
pipeline tests (including the science assertions), the quickstart notebook and the export
checks of the fit stages. It is built once per test run, also under pytest-xdist: a background
process started as soon as collection ends (`pytest_collection_finish`) builds it into a folder
all workers share, while the workers run the other tests; the tests using it are ordered last
(tests/conftest.py) and wait for it.

Tests marked ``serial`` start 2-process runs (DDP, ZeRO): they hold a lock that every xdist
worker of the test run shares (`pytest_runtest_protocol`), so two of them never run at once
(four ranks on two cores); the other worker goes on with single-process tests meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from _fit_helpers import REPO, env

BUILDER = Path(__file__).parent / "_tiny_pipeline_build.py"
_BUILD_TIMEOUT_S = 2700


@dataclass
class PipelineRun:
    run_dir: Path
    first: subprocess.CompletedProcess  # the whole pipeline
    again: subprocess.CompletedProcess  # the same fit steps re-run: each one skipped


def _shared_root(config: pytest.Config) -> Path:
    """This test run's folder for things built once: pytest's base temporary folder, which
    xdist workers share as the parent of their own (``.../pytest-N/popen-gwK``)."""
    base = config._tmp_path_factory.getbasetemp()  # what the tmp_path_factory fixture uses
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def start_tiny_pipeline(config: pytest.Config) -> Path:
    """Start the build of the tiny pipeline's runs unless this test run already has; return its
    folder. The first caller (of any worker) wins: creating the folder is atomic."""
    root = _shared_root(config) / "tiny_pipeline"
    try:
        root.mkdir()
    except FileExistsError:
        return root
    with (root / "build.log").open("w") as log:
        # its own process group, which `pytest_sessionfinish` stops if the run ends first
        proc = subprocess.Popen(
            [sys.executable, str(BUILDER), str(root)],
            cwd=REPO, env=env(), stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    (root / "pid").write_text(str(proc.pid))
    return root


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Run a ``serial`` test (set-up of its module's fixtures included) under the shared lock."""
    if item.get_closest_marker("serial") is None:
        return (yield)
    with (_shared_root(item.config) / "serial.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return (yield)


def pytest_collection_finish(session):
    """Start the shared build as soon as the tests that need it are known (none: no build)."""
    if session.config.option.collectonly:
        return
    if any("tiny_pipeline" in item.fixturenames for item in session.items):
        start_tiny_pipeline(session.config)


def pytest_sessionfinish(session):
    """When the whole run ends (in xdist's controller, or the only process), stop a build still
    running: the run was interrupted, or stopped (-x) before a test waited for it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a worker ends while another may still wait for the build
    root = _shared_root(session.config) / "tiny_pipeline"
    pid = (root / "pid").read_text().strip() if (root / "pid").is_file() else ""
    if not pid.isdigit() or (root / "result.json").is_file() or not _alive(int(pid)):
        return
    with contextlib.suppress(OSError):  # the build's own group (start_new_session)
        if "_tiny_pipeline_build" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
            os.killpg(int(pid), signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_for(root: Path) -> dict:
    """The build's result.json, once written; fails when the builder died without one."""
    result, deadline = root / "result.json", time.monotonic() + _BUILD_TIMEOUT_S
    while not result.is_file():
        pid = (root / "pid").read_text().strip() if (root / "pid").is_file() else ""
        if pid.isdigit() and not _alive(int(pid)) and not result.is_file():
            log = (root / "build.log").read_text()[-3000:]
            pytest.fail(f"the tiny pipeline build ended without a result:\n{log}")
        if time.monotonic() > deadline:
            pytest.fail(f"the tiny pipeline build took over {_BUILD_TIMEOUT_S} s ({root})")
        time.sleep(1)
    return json.loads(result.read_text())


def _completed(outcome: dict) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(
        "", outcome["returncode"], outcome["stdout"], outcome["stderr"]
    )


@pytest.fixture(scope="session")
def tiny_pipeline(request) -> PipelineRun:
    """`python -m argsfw.pipeline recipe=tiny_pipeline`, scaled down, then re-run (see
    `_tiny_pipeline_build.py`); waits for the shared build."""
    root = start_tiny_pipeline(request.config)  # already started when collection ended
    result = _wait_for(root)
    first = _completed(result["first"])
    assert first.returncode == 0, first.stderr[-3000:]
    again = _completed(result["again"])
    assert again.returncode == 0, again.stderr[-3000:]
    return PipelineRun(root / "demo", first, again)
