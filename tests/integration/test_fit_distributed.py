"""Multi-process fits (DDP, DeepSpeed ZeRO-2/3 on 2 CPU processes) and kill-and-resume.

Every multi-process run is a `python -m argsfw.fit` subprocess: a multi-process Trainer must
never start inside pytest (single-process fits and exports run in this process). ZeRO runs use `CPUDeepSpeedStrategy` (DeepSpeed with gloo) and a torch AdamW,
so only DeepSpeed's shared-memory op is compiled (once per machine, cached).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from _fit_helpers import REPO, RM_METRICS, SMALL, env, fit, fit_here, metrics, run_here

pytestmark = pytest.mark.slow
IDS = torch.tensor([[1, 40, 41, 42, 43, 44], [1, 50, 51, 52, 0, 0]])
MASK = (torch.arange(6) < torch.tensor([[6], [4]])).long()
TWO = ["trainer.devices=2", "optim.batch_size=16", "optim.micro_batch_size=8"]


def _rewards(path):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK).logits


@pytest.fixture(scope="module")
def zero_runs(tmp_path_factory) -> dict:
    """tiny_rm with ZeRO-2 and with ZeRO-3 on 2 CPU processes, each fitted once on first use."""
    root, runs = tmp_path_factory.mktemp("zero"), {}

    def get(stage: int):
        if stage not in runs:
            run = root / f"zero{stage}"
            fit(
                "recipe=tiny_rm",
                f"run_dir={run}",
                f"strategy=deepspeed_zero{stage}",
                "trainer.max_steps=3",
                "logger.name=none",
                *SMALL,
                *TWO,
                timeout=480,
            )
            runs[stage] = run
        return runs[stage]

    return get


@pytest.mark.serial  # 2 processes: one such test at a time (conftest.py)
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_on_two_cpu_processes_exports_and_converts(stage, zero_runs, tmp_path):
    run = zero_runs(stage)
    m = metrics(run)
    assert m["trainer/global_step"] == 3
    ckpt = run / "checkpoints" / "last.ckpt"
    assert (ckpt / "checkpoint").is_dir(), "a ZeRO checkpoint is a directory of shards"
    out = tmp_path / "converted"
    run_here("export", str(ckpt), str(out))
    torch.testing.assert_close(_rewards(out), _rewards(run / "hf"))


@pytest.mark.serial  # 2 processes: one such test at a time (conftest.py)
def test_zero2_and_zero3_train_the_same_model(zero_runs):
    """Same seed, data and fp32 AdamW: sharding the optimizer (2) or also the parameters (3)
    must not change what is learnt, up to the order of float sums in the collectives."""
    two, three = zero_runs(2), zero_runs(3)
    a, b = metrics(two), metrics(three)
    for key in ("train/loss", "val/loss", "val/reward_acc", "val/reward_gap"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    torch.testing.assert_close(_rewards(two / "hf"), _rewards(three / "hf"), rtol=1e-4, atol=1e-5)


@pytest.mark.serial  # 2 processes: one such test at a time (conftest.py)
def test_ddp_on_two_cpu_processes(tmp_path):
    from transformers import AutoModelForCausalLM

    run = tmp_path / "ddp"
    fit(
        "recipe=tiny_sft",
        f"run_dir={run}",
        "strategy=ddp",
        "trainer.max_steps=3",
        "logger.name=none",
        *SMALL,
        *TWO,
        timeout=300,
    )
    assert metrics(run)["trainer/global_step"] == 3
    AutoModelForCausalLM.from_pretrained(run / "hf")


RESUME = [
    *SMALL,
    "data.limit=160",
    "trainer.max_steps=40",
    "trainer.checkpoint_every_n_steps=4",
    "trainer.max_epochs=2",
    "rm.prefix_cuts=1",
    "logger.name=none",
    "optim.warmup_steps=4",
]


def test_killed_then_resumed_run_matches_an_uninterrupted_one(tmp_path):
    # 160 pairs / batch 8 = 20 batches per epoch, 40 steps: the kill lands mid-epoch (after step 8);
    # the run is long enough (~2.5 s of steps here) that a fast machine cannot finish first
    args = ["python", "-m", "argsfw.fit", "recipe=tiny_rm", *RESUME]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, *args[1:], f"run_dir={killed}"],
        cwd=REPO,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    step_ckpt = killed / "checkpoints" / "step000008.ckpt"
    deadline = time.monotonic() + 240
    try:
        while not step_ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let the checkpoint write finish
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and not (killed / "metrics.json").exists()
    fit_here("recipe=tiny_rm", *RESUME, f"run_dir={killed}", "resume=true")
    fresh = tmp_path / "fresh"
    fit_here("recipe=tiny_rm", *RESUME, f"run_dir={fresh}")
    a, b = metrics(killed), metrics(fresh)
    assert a["trainer/global_step"] == b["trainer/global_step"] == 40
    for key in RM_METRICS:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    torch.testing.assert_close(_rewards(killed / "hf"), _rewards(fresh / "hf"))
