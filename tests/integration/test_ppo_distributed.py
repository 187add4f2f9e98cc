"""PPO on 2 CPU processes: DDP and DeepSpeed ZeRO-2, as `argsfw.fit` subprocesses.

Each rank samples its own prompts and its own tokens, so its gradients differ from the other
rank's: the ranks' weights stay identical only if gradients are synchronised. The helper script
`_ppo_rank_params.py` records every rank's trained weights and DDP's synchronised backwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _fit_helpers import REPO, env, metrics

HELPER = Path(__file__).with_name("_ppo_rank_params.py")
# 3 rollouts of 8 prompts per rank, 2 PPO epochs of one mini-batch of 2 micro-batches (global
# batch 16 = micro 4 x 2 ranks x accumulation 2): 6 optimizer steps, 12 backwards per rank
TWO_RANKS = [
    "recipe=tiny_ppo",
    "trainer.devices=2",
    "ppo.rollout_batch_size=8",
    "ppo.max_new_tokens=8",
    "optim.batch_size=16",
    "optim.micro_batch_size=4",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "data.limit=96",
    "logger=csv",
]


def _fit_two_ranks(kit: dict, root: Path, strategy: str) -> Path:
    """Run the helper with `strategy`; return the run dir (rank files in ``run/params``)."""
    run = root / strategy
    params = run.parent / f"{strategy}-params"
    params.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, str(HELPER), *TWO_RANKS, f"strategy={strategy}", f"run_dir={run}",
         f"policy={kit['policy']}", f"reward_model={kit['reward_model']}"],
        cwd=REPO, env=env(PARAMS_DIR=str(params), OMP_NUM_THREADS="1"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return run


def _rank(run: Path, rank: int) -> tuple[torch.Tensor, dict]:
    params = run.parent / f"{run.name}-params"
    stats = json.loads((params / f"rank{rank}.json").read_text())
    return torch.load(params / f"rank{rank}.pt"), stats


@pytest.fixture(scope="module")
def ddp_run(tiny_kit, tmp_path_factory) -> Path:
    return _fit_two_ranks(tiny_kit, tmp_path_factory.mktemp("ppo_ddp"), "ddp")


@pytest.mark.serial  # 2 processes: one such test at a time (conftest.py)
@pytest.mark.slow
def test_ppo_ddp_syncs_gradients_once_per_optimizer_step(ddp_run, tiny_kit):
    from transformers import AutoModelForCausalLM

    (w0, s0), (w1, s1) = _rank(ddp_run, 0), _rank(ddp_run, 1)
    assert s0["global_step"] == s1["global_step"] == 6
    # one all-reduce per optimizer step: the other 6 backwards per rank accumulate locally
    assert s0["ddp_syncs"] == s1["ddp_syncs"] == 6
    torch.testing.assert_close(w0, w1, rtol=0, atol=0)  # ranks trained on different rollouts
    start = AutoModelForCausalLM.from_pretrained(tiny_kit["policy"])
    trained = AutoModelForCausalLM.from_pretrained(ddp_run / "hf")
    moved = [not torch.equal(a, b) for a, b in zip(start.parameters(), trained.parameters())]
    assert all(moved), "every actor parameter should have been updated"


@pytest.mark.serial  # 2 processes: one such test at a time (conftest.py)
@pytest.mark.slow
def test_ppo_zero2_on_two_processes_matches_ddp_and_exports(ddp_run, tiny_kit, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = _fit_two_ranks(tiny_kit, tmp_path, "deepspeed_zero2")
    (w0, s0), (w1, _) = _rank(run, 0), _rank(run, 1)
    assert s0["global_step"] == metrics(run)["trainer/global_step"] == 6
    torch.testing.assert_close(w0, w1, rtol=0, atol=0)
    # the same rollouts, accumulation and clipping as DDP: the same weights up to float rounding
    torch.testing.assert_close(w0, _rank(ddp_run, 0)[0], rtol=0, atol=1e-6)
    policy = AutoModelForCausalLM.from_pretrained(run / "hf")
    tok = AutoTokenizer.from_pretrained(run / "hf")
    out = policy.generate(
        **tok("\n\nHuman: Hi\n\nAssistant:", return_tensors="pt"), max_new_tokens=3
    )
    assert out.shape[1] > 0
    assert (run / "checkpoints" / "last.ckpt" / "checkpoint").is_dir()


def test_ppo_refuses_zero3_naming_the_supported_strategies(tiny_kit, tmp_path, capsys):
    from argsfw.fit import main

    code = main(
        ["recipe=tiny_ppo", f"policy={tiny_kit['policy']}", f"reward_model={tiny_kit['reward_model']}",
         "strategy=deepspeed_zero3", f"run_dir={tmp_path / 'run'}", "logger=none"]
    )  # fmt: skip
    assert code == 2
    assert "strategy=deepspeed_zero2" in capsys.readouterr().err
