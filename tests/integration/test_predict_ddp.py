"""Predict as separate processes: 2-rank DDP equals 1 rank; a killed run resumes losslessly.

Multi-process Trainers never start inside pytest (Lightning would re-launch pytest itself):
these run ``python -m argsfw.predict`` as subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from argsfw.predict import main

pytestmark = pytest.mark.slow  # subprocesses: 2 ranks, a killed run
REPO = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
}  # one intra-op thread per process (DDP ranks get it from Lightning)


def _args(kit, run_dir: Path, *extra: str) -> list[str]:
    return [
        "recipe=tiny_args",
        f"policy={kit['policy']}",
        f"reward_model={kit['reward_model']}",
        f"run_dir={run_dir}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        *extra,
    ]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _predict_subprocess(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "argsfw.predict", *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.serial  # 2 processes: one such test at a time (conftest.py)
def test_two_ranks_equal_one_rank(tiny_kit, tmp_path):
    # 5 prompts on 2 ranks: uneven shards (3 + 2), batches of 2 differ from the 1-rank batches.
    common = ["data.limit=5", "decode.batch_size=2", "decode.max_new_tokens=6"]
    assert main(_args(tiny_kit, tmp_path / "one", *common)) == 0
    proc = _predict_subprocess(_args(tiny_kit, tmp_path / "two", *common, "trainer.devices=2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (
        _records(tmp_path / "one" / "outputs.jsonl"),
        _records(tmp_path / "two" / "outputs.jsonl"),
    )
    assert [r["id"] for r in two] == [r["id"] for r in one]
    assert [r["result"] for r in two] == [r["result"] for r in one]
    assert {r["stats"]["rank"] for r in two} == {0, 1}
    assert (tmp_path / "two" / "DONE").is_file() and not list(
        (tmp_path / "two").glob("outputs.part-*")
    )
    assert json.loads((tmp_path / "two" / "meta.json").read_text())["predict"]["ranks"] == 2

    # Extending the finished run by one prompt leaves rank 1 with nothing to do: no hang, no loss.
    proc = _predict_subprocess(
        _args(tiny_kit, tmp_path / "two", *common, "trainer.devices=2", "data.limit=6")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = [r["id"] for r in _records(tmp_path / "two" / "outputs.jsonl")]
    assert ids == [f"tiny-test-{i:05d}" for i in range(6)]


def test_killed_run_resumes_with_every_prompt_exactly_once(tiny_kit, tmp_path):
    run = tmp_path / "run"
    n = 16
    args = _args(
        tiny_kit, run, f"data.limit={n}", "decode.batch_size=1", "decode.max_new_tokens=12"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "argsfw.predict", *args],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    part = run / "outputs.part-rank0.jsonl"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if part.is_file() and part.read_text().count("\n") >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.kill()  # SIGKILL: no cleanup, possibly mid-write
    finally:
        proc.wait(timeout=30)
    flushed = part.read_text().count("\n")
    assert 3 <= flushed < n and not (run / "DONE").exists()

    assert main([*args, "decode.batch_size=8"]) == 0  # batch size is free to change on resume
    ids = [r["id"] for r in _records(run / "outputs.jsonl")]
    assert ids == [f"tiny-test-{i:05d}" for i in range(n)]  # each prompt once, in order
    meta = json.loads((run / "meta.json").read_text())
    assert (
        meta["predict"]["already_done_at_start"] >= flushed
        and meta["predict"]["duplicates_dropped"] == 0
    )
    assert (run / "DONE").is_file()
