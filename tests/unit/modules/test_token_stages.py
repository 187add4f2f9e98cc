"""The arm and token_rm stages in one process: rewards against slow references, training, export."""

from __future__ import annotations

import json

import pytest
import torch

from argsfw.config.run_dir import RunDir

DATA = ["data.limit=32", "optim.batch_size=8", "optim.micro_batch_size=8"]


def _parts(tiny_job, tmp_path, recipe, *overrides):
    from argsfw.modules import build_stage

    torch.manual_seed(0)
    return build_stage(tiny_job(recipe, *DATA, *overrides), RunDir(tmp_path / "run"))


def _batch(parts, split="train"):
    dm = parts.datamodule
    dm.setup("fit")
    loader = dm.train_dataloader() if split == "train" else dm.val_dataloader()
    return next(iter(loader))


def _row(batch, side, i):
    n = int(batch[f"{side}_attention_mask"][i].sum())
    return batch[f"{side}_input_ids"][i, :n], int(batch["prompt_len"][i])


def _train(module, batch, steps, lr=3e-3):
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr)
    module.train()
    for _ in range(steps):
        opt.zero_grad()
        module.training_step(batch, 0).backward()
        opt.step()
    module.eval()


def _quiet_log(module):
    module.log = lambda *a, **k: None  # no Trainer attached: logging is not under test here
    return module


def _export(parts, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "hf"
    parts.export(parts.module, out)
    return AutoModelForCausalLM.from_pretrained(out).eval(), json.loads(
        (out / "config.json").read_text()
    )


def test_arm_reward_is_the_response_log_likelihood_and_training_separates_pairs(tiny_job, tmp_path):
    parts = _parts(tiny_job, tmp_path, "tiny_arm", "policy=null")
    module = _quiet_log(parts.module).eval()
    batch = _batch(parts)
    with torch.no_grad():
        chosen, _ = module.rewards(batch)
    # slow reference: one unpadded forward per row, token by token
    for i in (0, 3):
        ids, p = _row(batch, "chosen", i)
        with torch.no_grad():
            logp = torch.log_softmax(module.model(input_ids=ids[None]).logits[0], -1)
        expected = sum(float(logp[t - 1, ids[t]]) for t in range(p, len(ids)))
        assert float(chosen[i]) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    with torch.no_grad():
        before = module._loss(*module.rewards(batch)).item()
    _train(module, batch, 8)
    with torch.no_grad():
        c, r = module.rewards(batch)
    assert module._loss(c, r).item() < before - 0.1 and (c > r).float().mean() > 0.7
    assert parts.meta["reward_kind"] == "arm" and parts.meta["kind"] == "reward_model"
    loaded, config = _export(parts, tmp_path)
    assert config["argsfw_reward_kind"] == "arm"
    ids = batch["chosen_input_ids"][:2]
    mask = batch["chosen_attention_mask"][:2]
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(input_ids=ids, attention_mask=mask).logits, module(ids, mask)
        )


def test_token_rm_value_is_the_raw_head_at_the_token_before_the_last(tiny_job, tmp_path):
    parts = _parts(tiny_job, tmp_path, "tiny_token_rm", "policy=null")
    module = _quiet_log(parts.module)
    batch = _batch(parts)
    _train(module, batch, 8)
    with torch.no_grad():
        chosen, rejected, _ = module._bt_terms(batch)
    assert (chosen > rejected).float().mean() > 0.7
    loaded, config = _export(parts, tmp_path)
    assert config["argsfw_reward_kind"] == "token" and parts.meta["token_rm_mode"] == "bt"
    # the decoding contract: r(x, y) = M(x, y_<T).logits[-1, y_T], read from the exported dir
    for i in (0, 5):
        ids, _ = _row(batch, "rejected", i)
        with torch.no_grad():
            head = loaded(input_ids=ids[None, :-1]).logits[0, -1]
        assert float(rejected[i]) == pytest.approx(float(head[ids[-1]]), rel=1e-4, abs=1e-4)


@pytest.fixture
def distill_parts(tiny_job, tiny_kit, tmp_path):
    return _parts(
        tiny_job,
        tmp_path,
        "tiny_token_rm_distill",
        f"policy={tiny_kit['policy']}",
        f"token_rm.teacher_rm={tiny_kit['reward_model']}",
        "token_rm.distill_topk=4",
        "token_rm.distill_prefixes=3",
    )


def test_distill_targets_match_unpadded_policy_top_k_and_teacher_scores(distill_parts, tiny_kit):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    module = distill_parts.module
    names = {n for n, _ in module.named_parameters()}
    assert names and all(n.startswith("model.") for n in names)  # frozen models unregistered
    assert sum(p.numel() for p in module.parameters()) == sum(
        p.numel() for p in module.model.parameters()
    )
    batch = _batch(distill_parts, "val")
    t = module.distill_targets(batch, torch.Generator().manual_seed(3))
    assert t["cands"].shape == t["target"].shape == (len(t["rows"]), 4)
    policy = AutoModelForCausalLM.from_pretrained(tiny_kit["policy"]).eval()
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_kit["reward_model"]).eval()
    stacked = torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]])
    for i in (0, len(t["rows"]) // 2, len(t["rows"]) - 1):
        prefix = stacked[t["rows"][i], : t["pos"][i] + 1]
        with torch.no_grad():
            top = policy(input_ids=prefix[None]).logits[0, -1].topk(4).indices
            assert t["cands"][i].tolist() == top.tolist()
            seqs = torch.cat([prefix.expand(4, -1), top[:, None]], dim=1)  # [4, L + 1]
            # the reward at each sequence's last token (the classifier's own pad search aside)
            expected = teacher.score(teacher.model(input_ids=seqs).last_hidden_state[:, -1])[:, 0]
        torch.testing.assert_close(t["target"][i], expected, rtol=1e-4, atol=1e-4)


def test_distill_training_improves_top1_agreement_and_exports(distill_parts, tmp_path):
    from argsfw.rlhf.token_rewards import distill_loss

    module = _quiet_log(distill_parts.module)
    batch = _batch(distill_parts)
    module.eval()
    with torch.no_grad():
        pred, target = module._distill_terms(batch, None)
    before = distill_loss(pred, target).item()
    _train(module, batch, 15, lr=5e-3)
    with torch.no_grad():
        pred, target = module._distill_terms(batch, None)
    assert distill_loss(pred, target).item() < 0.5 * before
    assert distill_parts.meta["token_rm_mode"] == "distill" and distill_parts.meta["teacher_rm"]
    _, config = _export(distill_parts, tmp_path)
    assert config["argsfw_reward_kind"] == "token"


def test_sequence_rm_export_records_its_kind(tiny_job, tmp_path):
    parts = _parts(tiny_job, tmp_path, "tiny_rm")
    parts.export(parts.module, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["argsfw_reward_kind"] == "sequence" and parts.meta["reward_kind"] == "sequence"


def test_distill_under_lora_takes_candidates_from_the_student_without_adapters(
    distill_parts, tiny_job, tiny_kit, tmp_path
):
    lora = _parts(
        tiny_job,
        tmp_path / "lora",
        "tiny_token_rm_distill",
        f"policy={tiny_kit['policy']}",
        f"token_rm.teacher_rm={tiny_kit['reward_model']}",
        "token_rm.distill_topk=4",
        "token_rm.distill_prefixes=3",
        "model.lora.enabled=true",
        "model.lora.r=4",
    )
    assert lora.module.policy is None and distill_parts.module.policy is not None
    for n, p in lora.module.named_parameters():  # non-zero adapters: the student differs
        if "lora_B" in n:
            p.data.normal_()
    batch = _batch(distill_parts, "val")
    g = torch.Generator
    ref = distill_parts.module.distill_targets(batch, g().manual_seed(1))
    got = lora.module.eval().distill_targets(batch, g().manual_seed(1))
    assert torch.equal(got["cands"], ref["cands"]) and torch.equal(got["pos"], ref["pos"])
    torch.testing.assert_close(got["target"], ref["target"])
