"""tiny_arm, tiny_token_rm and tiny_token_rm_distill end to end (`argsfw.fit.main` in this process)."""

from __future__ import annotations

import json

import pytest
import torch
from _fit_helpers import SMALL, fit_here, metrics

pytestmark = pytest.mark.slow
SHORT = ["trainer.max_steps=4", "logger.name=none", *SMALL]


def _exported(run, kind):
    from transformers import AutoModelForCausalLM

    meta = json.loads((run / "hf" / "meta.json").read_text())
    config = json.loads((run / "hf" / "config.json").read_text())
    assert meta["reward_kind"] == config["argsfw_reward_kind"] == kind
    assert meta["status"] == "completed" and (run / "hf" / "tokenizer.json").is_file()
    return AutoModelForCausalLM.from_pretrained(run / "hf").eval(), meta


@pytest.mark.parametrize("recipe", ["tiny_arm", "tiny_token_rm"])
def test_pairwise_token_rms_fit_and_export_a_causal_lm(recipe, tmp_path):
    run = tmp_path / recipe
    fit_here(f"recipe={recipe}", f"run_dir={run}", "policy=null", *SHORT)
    m = metrics(run)
    assert m["trainer/global_step"] == 4
    for key in ("train/loss", "val/loss", "val/reward_acc", "val/reward_gap"):
        assert key in m, key
    model, meta = _exported(run, "arm" if recipe == "tiny_arm" else "token")
    assert model.config.vocab_size == meta["vocab_size"]


def _distill(tiny_kit, run, *extra):
    fit_here(
        "recipe=tiny_token_rm_distill",
        f"run_dir={run}",
        f"policy={tiny_kit['policy']}",
        f"token_rm.teacher_rm={tiny_kit['reward_model']}",
        "token_rm.distill_topk=4",
        "optim.scheduler=constant",
        *SHORT,
        *extra,
    )


def test_distill_fits_and_a_resumed_run_equals_an_unbroken_one(tiny_kit, tmp_path):
    from safetensors.torch import load_file

    # kill-free: a 2-step run's mid-epoch step-2 checkpoint (saved before the epoch-end one,
    # which would mark the epoch done) is resumed to step 4 and compared with an unbroken run
    straight, half, halves = tmp_path / "straight", tmp_path / "half", tmp_path / "halves"
    _distill(tiny_kit, straight)
    _distill(tiny_kit, half, "trainer.max_steps=2", "trainer.checkpoint_every_n_steps=2")
    _distill(tiny_kit, halves, f"ckpt_path={half / 'checkpoints' / 'step000002.ckpt'}")
    a, b = metrics(straight), metrics(halves)
    assert a["trainer/global_step"] == b["trainer/global_step"] == 4
    for key in ("val/loss", "val/top1_agree"):
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    _, meta = _exported(straight, "token")
    assert meta["token_rm_mode"] == "distill" and meta["teacher_rm"] == str(
        tiny_kit["reward_model"]
    )
    wa = load_file(straight / "hf" / "model.safetensors")
    wb = load_file(halves / "hf" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], msg=name)


# Bad fit inputs of these stages are rows of the one bad-input table,
# tests/integration/test_bad_inputs.py.
