"""The GPU kit's bookkeeping (benchmarks/gpu/kit.py): token agreement, step records, targets."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kit():
    sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))
    try:
        yield importlib.import_module("kit"), importlib.import_module("report")
    finally:  # the kit's top-level module names must not linger for other tests
        sys.path.remove(str(REPO / "benchmarks" / "gpu"))
        for name in ("kit", "report"):
            sys.modules.pop(name, None)


def test_agreement_counts_prefix_and_positions(kit):
    kit, _ = kit
    ref = [[1, 2, 3, 4], [5, 6, 7, 8]]
    got = kit.agreement([[1, 2, 3, 4], [5, 9, 7, 8]], ref)
    # row 2 diverges at position 1 (prefix 1/4) but matches 3 of 4 positions
    assert got == dict(
        prompts=2, identical=1, common_prefix_frac=(1 + 0.25) / 2, same_position_frac=(1 + 0.75) / 2
    )


def test_a_killed_step_is_recorded_as_a_timeout(kit, tmp_path):
    _, report = kit
    steps, logs = tmp_path / "steps", tmp_path / "logs"
    steps.mkdir()
    logs.mkdir()
    (steps / "env.json").write_text(json.dumps({"status": "ok"}))
    (steps / "speed.json").write_text(json.dumps({"status": "running", "rows": []}))
    (steps / "speed.rc").write_text("124\n")
    (steps / "identity.rc").write_text("137\n")
    (steps / "identity.log_name").write_text("env+identity.log\n")
    (logs / "env+identity.log").write_text("CUDA error: out of memory\n")
    (steps / "fit_sft.rc").write_text("1\n")
    got = report.load_steps(tmp_path)
    assert got["env"]["status"] == "ok"
    assert got["speed"]["status"] == "timeout"  # killed mid-step: its partial record is kept
    assert got["identity"]["status"] == "timeout" and "out of memory" in got["identity"]["error"]
    assert got["fit_sft"]["status"] == "failed" and got["fit_rm"]["status"] == "not run"


def test_targets_say_by_how_much_they_are_missed(kit):
    _, report = kit
    speed = dict(
        sizes=dict(dtypes=["bfloat16", "float16"]),
        rows=[
            dict(dtype="float16", k=10, vs_plain=1.0, speedup=9.0),
            dict(dtype="bfloat16", k=10, vs_plain=2.75, speedup=3.3),
        ],
        batch=[dict(dtype="bfloat16", k=10, batch=16, gain=6.0)],
    )
    got = {t["target"].split(" (")[0]: t for t in report.targets(speed)}
    assert got["ARGS-greedy / plain greedy"]["met"] is False
    assert got["ARGS-greedy / plain greedy"]["missed_by_pct"] == 25.0  # 2.75 vs <= 2.2
    assert got["batch 16 / batch 1 prompts/s"]["missed_by_pct"] == 25.0  # 6 vs >= 8
    assert got["speedup over the original structure"]["met"] is True
