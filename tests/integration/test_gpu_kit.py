"""The GPU verification kit's dry run: `benchmarks/gpu/run.sh --dry-run` on the CPU at tiny sizes.

The GPU run is the same script with the installed wheels and GPU sizes; running its dry run here
keeps every step (and its command lines) working between GPU runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest
from _fit_helpers import REPO, env

pytestmark = pytest.mark.slow
STEPS = ("env", "identity", "speed", "fit_sft", "fit_rm", "fit_zero2")


def test_gpu_kit_dry_run(tmp_path, shared_data):
    out = tmp_path / "kit"
    extra = dict(
        KIT_PYTHON=sys.executable,  # the project's venv in place of the wheel install
        KIT_INSTALL="0",
        KIT_DATA=str(shared_data / "hh-rlhf"),
        KIT_TOTAL="400",  # a cap against a hang, not the expected time
        KIT_WORK=str(tmp_path / "work"),
    )
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu" / "run.sh"), "--dry-run", str(out)],
        cwd=REPO,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=450,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the GPU machine returns at most 8 files from its output folder: the kit leaves three
    assert sorted(p.name for p in out.iterdir()) == [
        "kit-logs.tar.gz",
        "results.json",
        "results.md",
    ]
    with tarfile.open(out / "kit-logs.tar.gz") as tar:
        names = tar.getnames()
    assert "steps/identity.json" in names and "logs/fit_sft.fit.log" in names
    res = json.loads((out / "results.json").read_text())
    assert res["mode"] == "dry-run"
    steps = res["steps"]
    assert {name: steps[name]["status"] for name in STEPS} == dict.fromkeys(STEPS, "ok"), steps
    assert steps["env"]["transformers_cache_api"] is True

    identity = steps["identity"]
    assert [c["case"] for c in identity["cases"]] == [
        "greedy",
        "greedy-large",
        "batched greedy",
        "batched greedy-large",
    ]
    assert all(c["identical"] for c in identity["cases"]), identity["cases"]
    assert identity["dtype"] == "float32" and len(set(identity["prompt_tokens"])) == 4

    speed = steps["speed"]
    assert {(r["dtype"], r["k"]) for r in speed["rows"]} == {("bfloat16", 10), ("bfloat16", 40)}
    for r in speed["rows"]:
        assert r["fast_s"] > 0 and r["orig_s"] > 0 and r["plain_s"] > 0
        assert r["speedup"] == pytest.approx(r["orig_s"] / r["fast_s"])
        assert 270 <= r["L"] <= 330 and r["new"] == 8
    assert [(b["k"], b["batch"]) for b in speed["batch"]] == [(10, 4), (40, 4)]
    assert all(b["gain"] > 0 for b in speed["batch"])
    for g in speed["agreement"]:
        assert g["prompts"] == 1 and 0 <= g["common_prefix_frac"] <= g["same_position_frac"] <= 1
    assert "aten::" in speed["profile"]["table"]
    assert [t["value"] is not None for t in res["targets"]] == [True] * 3

    for name in ("fit_sft", "fit_rm"):
        assert all(steps[name]["checks"].values()), steps[name]
        assert "trainer.precision=bf16-mixed" in steps[name]["command"]
    assert "strategy=deepspeed_zero2" in steps["fit_zero2"]["command"]

    md = (out / "results.md").read_text()
    assert "| batched greedy | 4 | yes |" in md and "**Targets** (issue 14)" in md
