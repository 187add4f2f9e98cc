"""``python -m argsfw.evaluate`` with the judge, as a subprocess, against a server on 127.0.0.1.

Every run sets HTTP(S)_PROXY to a closed loopback port, so even a request the code should
never send cannot leave the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from judge_server import Reply, closed_port

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def two_runs(make_run):
    """Candidate vs baseline on the three conftest prompts: one win, one tie, one loss."""
    cand = make_run("cand", [" GOOD one", " plain", " BAD one"], method="args-greedy")
    base = make_run("base", [" BAD one", " plain too", " GOOD one"], method="greedy")
    return [f"cand={cand}", f"base={base}"]


def _evaluate(run_dir: Path, outputs: list[str], *args: str, env: dict | None = None):
    dead = f"http://127.0.0.1:{closed_port()}"
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        **{k: dead for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "https_proxy")},
        **(env or {}),
    }
    for k in ("NO_PROXY", "no_proxy", "ARGSFW_TEST_NO_KEY"):
        full_env.pop(k, None)
    cmd = [
        sys.executable,
        "-m",
        "argsfw.evaluate",
        "outputs=[" + ",".join(f"'{o}'" for o in outputs) + "]",
    ]
    cmd += ["eval.metrics=[cost]", "logger.name=none", f"run_dir={run_dir}", *args]
    cmd += ["eval.judge.enabled=true", "eval.judge.model=judge-1", "eval.judge.baseline=base"]
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=180)


def _error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines and lines[-1].startswith("argsfw evaluate: error: "), proc.stderr
    return lines[-1]


def test_win_tie_lose_land_in_report(judge_server, two_runs, tmp_path):
    url, server = judge_server
    out = tmp_path / "eval"
    proc = _evaluate(out, two_runs, f"eval.judge.base_url={url}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (j,) = json.loads((out / "report.json").read_text())["judge"]
    assert (j["a"], j["b"]) == ("cand", "base")
    assert (j["win"], j["tie"], j["lose"], j["unparsed"], j["failed"]) == (1, 1, 1, 0, 0)
    assert j["n_judged"] == 3 and len(server.requests) == 6  # both orders of three prompts
    outcomes = [
        json.loads(line)["outcome"]
        for line in (out / "judge" / "cand__vs__base.jsonl").read_text().splitlines()
    ]
    assert sorted(outcomes) == ["lose", "tie", "win"]


def test_remote_endpoint_without_key_exits_2_before_anything(two_runs, tmp_path):
    out = tmp_path / "eval"
    proc = _evaluate(
        out,
        two_runs,
        "eval.judge.base_url=https://judge.example.com/v1",
        "eval.judge.api_key_env=ARGSFW_TEST_NO_KEY",
        # reward first would fail on this path: the judge's check must come before any model
        "eval.metrics=[reward,cost]",
        f"reward_model={tmp_path / 'no_such_rm'}",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _error_line(proc)
    assert "$ARGSFW_TEST_NO_KEY is unset: export ARGSFW_TEST_NO_KEY=<key>" in line
    assert not (out / "report.json").exists()


def test_refused_key_exits_2(judge_server, two_runs, tmp_path):
    url, server = judge_server
    server.default = lambda req: Reply(status=401, text="invalid api key")
    out = tmp_path / "eval"
    proc = _evaluate(
        out,
        two_runs,
        f"eval.judge.base_url={url}",
        "eval.judge.api_key_env=ARGSFW_TEST_KEY",
        env={"ARGSFW_TEST_KEY": "sk-test-wrong"},
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _error_line(proc)
    assert "HTTP 401" in line and "$ARGSFW_TEST_KEY was refused" in line
    assert len(server.requests) == 1 and server.requests[0]["auth"] == "Bearer sk-test-wrong"
    assert not (out / "report.json").exists()


def test_dead_endpoint_is_refused_at_start_up(two_runs, tmp_path):
    """Nothing listens: one line at start-up (exit 2), not after the other metrics ran."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    out = tmp_path / "eval"
    start = time.monotonic()
    proc = _evaluate(out, two_runs, f"eval.judge.base_url={url}", "eval.judge.max_retries=10")
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _error_line(proc)
    assert f"judge endpoint {url} is unreachable (Connection refused); start the server" in line
    assert not out.exists() or not (out / "report.json").exists()
    assert elapsed < 60, elapsed
