"""model.cache_frozen in the rm, dpo and arm stages: the same loss and gradients as the model's own
forward, the feature pass of a real fit, and a second fit that computes nothing."""

from __future__ import annotations

import logging

import pytest
import torch

from argsfw.config.run_dir import RunDir

TOP = ["model.train_top_layers=1", "model.tiny.num_layers=3", "policy=null"]
DATA = ["data.limit=16", "optim.batch_size=8", "optim.micro_batch_size=8"]


def _parts(tiny_job, tmp_path, recipe, cached: bool, *extra):
    from argsfw.modules import build_stage

    torch.manual_seed(0)
    overrides = [*TOP, *DATA, *extra]
    if cached:
        overrides += ["model.cache_frozen=true", "model.feature_dir=memory"]
    parts = build_stage(tiny_job(recipe, *overrides), RunDir(tmp_path / f"run{cached}"))
    parts.module.log = lambda *a, **k: None  # no Trainer attached; logging is not under test
    parts.datamodule.setup("fit")
    return parts


def _loss_and_grads(parts):
    batch = next(iter(parts.datamodule.train_dataloader()))
    parts.module.train()
    loss = parts.module.training_step(batch, 0)
    loss.backward()
    grads = {n: p.grad for n, p in parts.module.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("recipe", ["tiny_rm", "tiny_dpo", "tiny_arm"])
def test_cached_stage_equals_the_models_own_forward(tiny_job, tmp_path, recipe):
    extra = ["rm.prefix_cuts=0"] if recipe == "tiny_rm" else []
    plain_loss, plain = _loss_and_grads(_parts(tiny_job, tmp_path, recipe, False, *extra))
    cached = _parts(tiny_job, tmp_path, recipe, True, *extra)
    loss, grads = _loss_and_grads(cached)
    torch.testing.assert_close(loss, plain_loss, atol=1e-5, rtol=1e-5)
    assert grads.keys() == plain.keys() and len(grads) > 3
    for name, g in grads.items():
        torch.testing.assert_close(g, plain[name], atol=1e-5, rtol=1e-4, msg=name)
    assert not any(".layers.0." in n for n in grads)  # the bottom stays frozen
    caches = cached.module.caches if recipe == "tiny_dpo" else (cached.module.frozen,)
    assert len(caches[0].store) > 0  # the batch was read through the store
    if recipe == "tiny_dpo":  # the reference reads the policy's store: one bottom, one store
        assert caches[1].store is caches[0].store


def test_a_second_fit_reads_the_features_the_first_stored(tmp_path, caplog, monkeypatch):
    from argsfw.fit import main

    monkeypatch.chdir(tmp_path)
    args = [
        "recipe=tiny_rm",
        *TOP,
        "model.tiny.hidden_size=32",
        "model.tiny.intermediate_size=64",
        "model.tiny.num_heads=2",
        "model.cache_frozen=true",
        f"model.feature_dir={tmp_path / 'features'}",
        "data.limit=24",
        "data.group_by_length=true",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=1",
        "logger.name=none",
        "trainer.enable_progress_bar=false",
    ]
    caplog.set_level(logging.INFO, logger="argsfw.modules._top_layers")
    assert main([*args, "run_dir=first"]) == 0
    first = [r.getMessage() for r in caplog.records if "frozen features" in r.getMessage()]
    assert first and not first[0].startswith("frozen features: 0 pairs")
    (store,) = (tmp_path / "features").iterdir()
    assert list(store.glob("shard-*.safetensors"))
    caplog.clear()
    assert main([*args, "run_dir=second"]) == 0
    second = [r.getMessage() for r in caplog.records if "frozen features" in r.getMessage()]
    assert second and second[0].startswith("frozen features: 0 pairs computed")
