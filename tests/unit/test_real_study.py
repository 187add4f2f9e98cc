"""benchmarks/real_study.py: a step's measured seconds and the study's wall time scheduled as the
pipeline runs its steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from argsfw.pipeline import Step


@pytest.fixture(scope="module")
def rs(benchmark_module):
    return benchmark_module("real_study")


def _steps(root: Path) -> list[Step]:
    a, b = root / "a", root / "b"
    return [
        Step("a", "fit", ["recipe=x"], a),
        Step("b", "fit", ["recipe=y"], b),
        Step("predict x", "predict", [f"policy={a}"], root / "predict" / "x"),
        Step("predict y", "predict", [f"reward_model={b}"], root / "predict" / "y"),
        Step("evaluate", "evaluate", [], root / "evaluate"),
    ]


def test_schedule_waits_for_the_fits_a_row_names_and_runs_jobs_at_once(rs, tmp_path):
    steps = _steps(tmp_path)
    seconds = {"a": 10.0, "b": 30.0, "predict x": 5.0, "predict y": 5.0, "evaluate": 1.0}
    # two at a time: a and b from 0; x after a (10-15); y after b (30-35); evaluate after all
    assert rs.schedule(steps, seconds, jobs=2) == 36.0
    assert rs.schedule(steps, seconds, jobs=1) == 51.0
    # a third worker has nothing to run in parallel that the dependencies allow
    assert rs.schedule(steps, seconds, jobs=3) == 36.0


def test_a_rows_seconds_sum_every_attempts_records_plus_its_start_up(rs, tmp_path):
    step = _steps(tmp_path)[2]
    for sub, done, recs in (
        ("decode.weight=1.0", True, [2.0, 3.0]),
        ("decode.weight=2.0", False, [4.0]),
    ):
        d = step.run_dir / sub
        d.mkdir(parents=True)
        summary = {"seconds_this_run": 12.0, "decode_seconds": 5.0}  # 7 s of start-up
        (d / "meta.json").write_text(
            json.dumps(
                {"status": "completed" if done else "running", "predict": summary if done else None}
            )
        )
        name = "outputs.jsonl" if done else "outputs.part-rank0.jsonl"
        (d / name).write_text(
            "".join(json.dumps({"id": i, "seconds": s}) + "\n" for i, s in enumerate(recs))
        )
    assert rs.step_seconds(step) == 2.0 + 3.0 + 7.0 + 4.0
    assert not rs.step_complete(step)


def test_a_fits_seconds_are_its_start_to_finish(rs, tmp_path):
    step = _steps(tmp_path)[0]
    step.run_dir.mkdir()
    meta = {"status": "completed", "started": "2026-12-07T13:22:57+0000",
            "finished": "2026-12-07T13:30:29+0000"}  # fmt: skip
    (step.run_dir / "meta.json").write_text(json.dumps(meta))
    assert rs.step_seconds(step) == 452.0 and rs.step_complete(step)
    assert rs.step_seconds(_steps(tmp_path)[1]) == 0.0  # never started
