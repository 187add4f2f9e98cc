"""`python -m argsfw.fit recipe=tiny_ppo` end to end on tiny models (the killed run as a
subprocess, the others through `argsfw.fit.main` in this process).

One uninterrupted run (exports checked with vanilla transformers), one run killed with SIGKILL
after a checkpoint and resumed: the resumed run must end with the same metrics, which needs
the critic, the optimizer (actor and critic groups) and its schedule, the data position, the
RNG and the adaptive KL controller restored. Multi-process PPO (DDP, DeepSpeed ZeRO-2) is in
``test_ppo_distributed.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _fit_helpers import REPO, env, fit_here, metrics

# 24 rollouts of 8 prompts, 2 PPO epochs of one mini-batch (2 micro-batches): 2 optimizer steps
# (one per mini-batch, actor and critic together) per rollout, so global_step moves by 2 per
# rollout and a checkpoint follows every rollout. Enough rollouts that the kill after the first
# checkpoint lands mid-run even on a fast machine.
SMALL = [
    "ppo.rollout_batch_size=8",
    "ppo.max_new_tokens=8",
    "ppo.adaptive_kl=true",
    "ppo.target_kl=0.01",
    "ppo.kl_horizon=100",
    "optim.batch_size=8",
    "optim.micro_batch_size=4",
    "trainer.limit_train_batches=24",
    "trainer.limit_val_batches=1",
    "trainer.checkpoint_every_n_steps=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "data.limit=192",
    "logger=csv",
]
COMPARED = (
    "ppo/reward",
    "ppo/kl",
    "ppo/kl_coef",
    "ppo/value_loss",
    "ppo/policy_loss",
    "val/reward",
)


def _args(kit: dict, run_dir: Path, *extra: str) -> list[str]:
    return [
        "recipe=tiny_ppo", f"policy={kit['policy']}", f"reward_model={kit['reward_model']}",
        f"run_dir={run_dir}", *SMALL, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def full_run(tiny_kit, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ppo") / "full"
    fit_here(*_args(tiny_kit, run_dir))
    return run_dir


@pytest.mark.slow
def test_ppo_fit_exports_policy_and_critic_for_vanilla_transformers(full_run, tiny_kit):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    hf = full_run / "hf"
    policy = AutoModelForCausalLM.from_pretrained(hf)
    tok = AutoTokenizer.from_pretrained(hf)
    prompt = tok("\n\nHuman: Hi\n\nAssistant:", return_tensors="pt")
    out = policy.generate(**prompt, max_new_tokens=3, do_sample=False)
    n = prompt["input_ids"].shape[1]
    assert torch.equal(out[:, :n], prompt["input_ids"]) and n < out.shape[1] <= n + 3
    # PPO moved the policy away from the SFT weights it started from
    start = AutoModelForCausalLM.from_pretrained(tiny_kit["policy"]).state_dict()
    trained = policy.state_dict()
    assert start.keys() == trained.keys()
    assert any(not torch.equal(start[k], trained[k]) for k in start), "PPO changed no weight"
    critic = AutoModelForSequenceClassification.from_pretrained(hf / "critic")
    assert critic.config.num_labels == 1
    final = metrics(full_run)
    for key in (*COMPARED, "ppo/entropy", "ppo/clip_frac", "val/ref_reward"):
        assert key in final, key
    assert final["trainer/global_step"] == 48  # 24 rollouts x 2 epochs x 1 mini-batch
    meta = json.loads((full_run / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["critic"] == "critic/"


@pytest.mark.slow
def test_ppo_killed_and_resumed_ends_with_the_same_metrics(full_run, tiny_kit, tmp_path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "argsfw.fit", *_args(tiny_kit, run_dir)], cwd=REPO, env=env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    ckpts = run_dir / "checkpoints"
    deadline = time.monotonic() + 240
    try:
        # kill once a rollout's checkpoint and its last.ckpt copy are fully written
        while not _settled(ckpts):
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (run_dir / "metrics.json").exists(), "killed too late: the run had finished"
    fit_here(*_args(tiny_kit, run_dir, "resume=true"))
    full, resumed = metrics(full_run), metrics(run_dir)
    for key in COMPARED:
        assert resumed[key] == pytest.approx(full[key], rel=1e-5, abs=1e-6), key
    assert resumed["trainer/global_step"] == full["trainer/global_step"]


def _settled(ckpts: Path, before_step: int = 12) -> bool:
    """A step checkpoint before `before_step` and last.ckpt exist, same size, not growing."""
    try:
        steps = [p for p in ckpts.glob("step*.ckpt") if int(p.stem[4:]) < before_step]
        last = ckpts / "last.ckpt"
        if not steps or not last.exists():
            return False
        newest = max(steps)
        size = newest.stat().st_size
        time.sleep(0.05)
        return size > 0 and newest.stat().st_size == size == last.stat().st_size
    except FileNotFoundError:  # save_top_k=1 deleted the older step file meanwhile
        return False


def test_tokenizer_mismatch_exits_2_naming_both(tiny_kit, tiny_texts, tmp_path, capsys):
    from argsfw.fit import main
    from argsfw.models import make_tiny_kit

    other = make_tiny_kit(tmp_path / "other", tiny_texts, vocab_size=300)
    code = main(
        ["recipe=tiny_ppo", f"policy={tiny_kit['policy']}", f"reward_model={other['reward_model']}",
         f"run_dir={tmp_path / 'run'}", "logger=none"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert str(tiny_kit["policy"]) in err and str(other["reward_model"]) in err


def test_missing_reward_model_exits_2_with_the_command_that_makes_one(tiny_kit, tmp_path, capsys):
    from argsfw.fit import main

    code = main(
        ["recipe=tiny_ppo", f"policy={tiny_kit['policy']}", "reward_model=null",
         f"run_dir={tmp_path / 'run'}", "logger=none"]
    )  # fmt: skip
    assert code == 2
    assert "python -m argsfw.fit recipe=tiny_rm" in capsys.readouterr().err
