"""The dpo stage in one process: log-likelihoods against the model's own forward, the loss at
the start (the policy is its reference), training that separates pairs, LoRA's reference, export."""

from __future__ import annotations

import math

import pytest
import torch

from argsfw.config.run_dir import RunDir

DATA = ["data.limit=32", "optim.batch_size=8", "optim.micro_batch_size=8", "policy=null"]


def _parts(tiny_job, tmp_path, *overrides):
    from argsfw.modules import build_stage

    torch.manual_seed(0)
    return build_stage(tiny_job("tiny_dpo", *DATA, *overrides), RunDir(tmp_path / "run"))


def _batch(parts):
    dm = parts.datamodule
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def _slow_logp(model, batch, side, i) -> float:
    """Σ log p(response token) of one row, by the model's own forward on that row alone."""
    n = int(batch[f"{side}_attention_mask"][i].sum())
    ids = batch[f"{side}_input_ids"][i, :n]
    start = int(batch["prompt_len"][i])
    with torch.no_grad():
        logp = model(input_ids=ids[None]).logits[0].float().log_softmax(-1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(max(start, 1), n))


def _train(module, batch, steps=15, lr=3e-3):
    module.log = lambda *a, **k: None  # no Trainer attached: logging is not under test here
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr)
    module.train()
    for _ in range(steps):
        opt.zero_grad()
        module.training_step(batch, 0).backward()
        opt.step()
    module.eval()


@pytest.mark.parametrize("lora", [False, True])
def test_dpo_starts_at_log2_and_learns_the_pairs(tiny_job, tmp_path, lora):
    extra = [
        "model.lora.enabled=true",
        "model.lora.r=4",
        "model.lora.target_modules=[q_proj,v_proj]",
    ]
    parts = _parts(tiny_job, tmp_path, *(extra if lora else []))
    module, batch = parts.module, _batch(parts)
    module.eval()
    with torch.no_grad():
        loss, r_w, r_l, _ = module.terms(batch)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)  # π = π_ref at the start
    assert r_w.abs().max() < 1e-5 and r_l.abs().max() < 1e-5
    # the log-likelihoods the loss reads are the model's own, response tokens only
    from argsfw.modules._lm_rewards import both_sides
    from argsfw.rlhf.token_rewards import sequence_logprob_sum

    ids, mask = both_sides(batch, "input_ids"), both_sides(batch, "attention_mask")
    with torch.no_grad():
        fast = sequence_logprob_sum(
            module.model(input_ids=ids, attention_mask=mask).logits, ids,
            both_sides(batch, "response_mask"),
        )  # fmt: skip
    n = batch["chosen_input_ids"].shape[0]
    for i in (0, n - 1):
        assert fast[i].item() == pytest.approx(
            _slow_logp(module.model, batch, "chosen", i), abs=1e-3
        )
        assert fast[n + i].item() == pytest.approx(
            _slow_logp(module.model, batch, "rejected", i), abs=1e-3
        )
    reference = module.reference
    frozen = {
        k: v.clone() for k, v in (reference or module.model).state_dict().items() if "lora" not in k
    }
    _train(module, batch, steps=40 if lora else 15, lr=3e-2 if lora else 3e-3)
    with torch.no_grad():
        after, r_w, r_l, kl = module.terms(batch)
    assert after.item() < (0.75 if lora else 0.5) * math.log(2) and bool((r_w > r_l).all())
    kept = (reference or module.model).state_dict()
    assert all(torch.equal(kept[k], v) for k, v in frozen.items())  # π_ref did not move
    out = tmp_path / "hf"
    parts.export(module, out)
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        want = module.model(input_ids=ids[:2], attention_mask=mask[:2]).logits
        got = saved(input_ids=ids[:2], attention_mask=mask[:2]).logits
    assert torch.allclose(got, want, atol=1e-4)


def test_dpo_settings_are_checked(tiny_job):
    from argsfw.errors import ConfigError

    with pytest.raises(ConfigError, match=r"dpo.beta=0.0 must be a finite number > 0"):
        tiny_job("tiny_dpo", "dpo.beta=0")
    with pytest.raises(ConfigError, match=r"dpo.label_smoothing=0.5 must be in \[0, 0.5\)"):
        tiny_job("tiny_dpo", "dpo.label_smoothing=0.5")
