"""The value stage (CD-FUDGE) in one process: targets are the RM's own reads of the sampled
answers, V starts as the RM (so its value of a whole answer is that answer's reward exactly),
training lowers the error on every prefix, and the export is a value model cd-blockwise reads."""

from __future__ import annotations

import json

import pytest
import torch

from argsfw.config.run_dir import RunDir


def _parts(tiny_job, tiny_kit, tmp_path, *overrides):
    from argsfw.modules import build_stage

    torch.manual_seed(0)
    job = tiny_job(
        "tiny_value", f"policy={tiny_kit['policy']}", f"reward_model={tiny_kit['reward_model']}",
        "data.limit=32", "optim.batch_size=4", "optim.micro_batch_size=4",
        "value.samples_per_prompt=2", "value.max_new_tokens=8", *overrides,
    )  # fmt: skip
    return build_stage(job, RunDir(tmp_path / "run"))


def _batch(parts):
    dm = parts.datamodule
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def test_value_targets_prefixes_and_training(tiny_job, tiny_kit, tmp_path):
    parts = _parts(tiny_job, tiny_kit, tmp_path)
    module, batch = parts.module, _batch(parts)
    module.eval()
    rm = module.rm
    with torch.no_grad():
        seqs, plens = module.sample(batch, step=3)
        again, _ = module.sample(batch, step=3)
        out = module._losses(batch, 3)
    assert seqs == again  # seeded per step
    assert len(seqs) == 2 * batch["input_ids"].shape[0]

    def hf(ids):  # the RM's own Hugging Face forward, one unpadded sequence
        x = torch.tensor([ids])
        return float(rm(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, 0])

    r = torch.tensor([hf(q) for q in seqs])
    prompt_v = torch.tensor([hf(q[:p]) for q, p in zip(seqs, plens)])
    assert out["reward"].item() == pytest.approx(r.mean().item(), abs=1e-4)
    assert out["loss_full"].item() == pytest.approx(0.0, abs=1e-8)  # V is the RM at the start
    assert out["loss_prompt"].item() == pytest.approx(((prompt_v - r) ** 2).mean().item(), rel=1e-4)
    module.log = lambda *a, **k: None
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    before = out["loss"].item()
    module.train()
    for _ in range(15):
        opt.zero_grad()
        module._losses(batch, 3)["loss"].backward()  # the same answers: must fit them
        opt.step()
    module.eval()
    with torch.no_grad():
        assert module._losses(batch, 3)["loss"].item() < 0.5 * before
    assert all(not p.requires_grad for m in module.frozen_models for p in m.parameters())
    out_dir = tmp_path / "hf"
    parts.export(module, out_dir)
    assert json.loads((out_dir / "config.json").read_text())["argsfw_reward_kind"] == "value"
    from argsfw.decoding.registry import get_method
    from argsfw.models.reward_kind import kind_error, reward_kind

    assert reward_kind(out_dir) == "value"
    assert kind_error(get_method("cd-blockwise"), "value") is None
    assert kind_error(get_method("cd-blockwise"), "sequence") is None
    assert "a value model" in kind_error(get_method("cd-blockwise"), "arm")


def test_value_needs_its_inputs(tiny_job):
    from argsfw.errors import ConfigError

    with pytest.raises(ConfigError, match="stage value needs reward_model="):
        tiny_job("tiny_value", "reward_model=null")
    with pytest.raises(ConfigError, match=r"value.samples_per_prompt=0 must be an integer >= 1"):
        tiny_job("tiny_value", "value.samples_per_prompt=0")
