"""PPOModule on tiny models: scoring path, rollouts, masking, one PPO step, checkpoints, inputs."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from argsfw.config.schema import OptimConfig, job_schema
from argsfw.errors import UsageError
from argsfw.models import load_policy, load_reward_model, load_tokenizer, make_tiny_kit
from argsfw.modules.ppo import FROZEN, KL_STATE_KEY, PPOModule, token_values
from argsfw.modules.ppo_stage import build
from argsfw.rlhf.rollout import positions_from_mask
from argsfw.stages.ppo import PPOConfig

PROMPTS = [
    "\n\nHuman: What is two plus two?\n\nAssistant:",
    "\n\nHuman: Tell me a joke.\n\nAssistant:",
    "\n\nHuman: How many legs does a spider have?\n\nAssistant:",
    "\n\nHuman: Hi\n\nAssistant:",
]


class _FakeTrainer:
    world_size = 1
    max_steps = 8
    estimated_stepping_batches = 1

    class strategy:  # noqa: N801 - stands in for trainer.strategy
        @staticmethod
        def reduce(x, reduce_op="mean"):
            return x

        block_backward_sync = staticmethod(contextlib.nullcontext)


def _batch(tokenizer):
    from argsfw.data import PromptCollator

    ids = tokenizer(PROMPTS)["input_ids"]
    feats = [
        {"input_ids": i, "id": str(k), "prompt": p} for k, (i, p) in enumerate(zip(ids, PROMPTS))
    ]
    return PromptCollator(tokenizer)(feats)


@pytest.fixture(scope="module")
def parts(tiny_kit):
    tok = load_tokenizer(tiny_kit["policy"])
    actor = load_policy(tiny_kit["policy"])
    critic = load_reward_model(tiny_kit["reward_model"])
    return actor, critic, tok


def _module(parts, **ppo) -> PPOModule:
    actor, critic, tok = parts
    actor, critic = copy.deepcopy(actor), copy.deepcopy(critic)
    cfg = PPOConfig(**{"max_new_tokens": 6, "rollout_batch_size": 4, **ppo})
    optim = OptimConfig(lr=1e-3, batch_size=2, micro_batch_size=1, scheduler="constant")
    m = PPOModule(
        actor, critic, copy.deepcopy(actor), copy.deepcopy(critic), tok, cfg, optim, accumulation=2
    )
    m.train()
    return m


def test_reward_path_matches_sequence_classifier_on_unpadded_text(parts):
    _, rm, tok = parts
    batch = _batch(tok)  # left-padded [B, P]
    ids, mask = batch["input_ids"], batch["attention_mask"]
    per_token = token_values(rm, ids, mask, positions_from_mask(mask))  # [B, P]
    for row, prompt in enumerate(PROMPTS):
        alone = tok(prompt, return_tensors="pt")
        expected = rm(**alone).logits.squeeze()
        assert per_token[row, -1].item() == pytest.approx(expected.item(), abs=1e-4)


def test_rollout_invariants(parts):
    torch.manual_seed(0)
    m = _module(parts, kl_coef=0.5)
    rollout, entropy = m.generate_rollout(_batch(parts[2]))
    b, r = rollout.response_mask.shape
    assert b == 4 and r <= 6 and entropy > 0
    # actor == reference at the start: zero KL, so rewards are the scores on the last token
    assert torch.allclose(rollout.logprobs, rollout.ref_logprobs, atol=1e-5)
    assert torch.allclose(rollout.rewards.sum(1), rollout.scores, atol=1e-5)
    # nothing is credited beyond each response's end (padding after EOS)
    pad = rollout.response_mask == 0
    for t in (rollout.advantages, rollout.returns, rollout.rewards, rollout.kl.unsqueeze(1) * pad):
        assert torch.all(t[pad] == 0)
    # the logprobs of a left-padded row equal those of the same row alone (padding-invariant)
    row = int(rollout.attention_mask[:, : rollout.prompt_length].sum(1).argmin())  # most padded
    keep = rollout.attention_mask[row].bool()
    ids = rollout.input_ids[row, keep].unsqueeze(0)
    n = int(rollout.response_mask[row].sum())
    logits = m.actor(input_ids=ids).logits[0, -n - 1 : -1]
    alone = torch.log_softmax(logits, -1).gather(1, ids[0, -n:, None]).squeeze(1)
    assert torch.allclose(rollout.logprobs[row, :n], alone, atol=1e-4)


def test_k3_rollout_kl_is_non_negative(parts):
    m = _module(parts, kl_estimator="k3")
    with torch.no_grad():
        for p in m.actor.parameters():  # move the actor away from the reference
            p.add_(0.05 * torch.randn_like(p))
    rollout, _ = m.generate_rollout(_batch(parts[2]))
    assert (rollout.kl > 0).all()


def _optimize_by_hand(m, monkeypatch):
    config = m.configure_optimizers.__func__(_with_trainer(m))
    monkeypatch.setattr(m, "optimizers", lambda: config["optimizer"])
    monkeypatch.setattr(m, "lr_schedulers", lambda: config["lr_scheduler"]["scheduler"])
    monkeypatch.setattr(m, "manual_backward", lambda loss: loss.backward())
    monkeypatch.setattr(m, "clip_gradients", lambda *a, **k: None)
    return config["optimizer"], config["lr_scheduler"]["scheduler"]


def test_ppo_step_updates_actor_and_critic_only(parts, monkeypatch):
    torch.manual_seed(0)
    m = _module(parts, ppo_epochs=2)
    opt, _ = _optimize_by_hand(m, monkeypatch)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    frozen = [p.clone() for p in (*m.ref.parameters(), *m.reward_model.parameters())]
    rollout, _ = m.generate_rollout(_batch(parts[2]))
    stats = m.ppo_step(rollout)
    assert set(stats) >= {"policy_loss", "value_loss", "clip_frac", "approx_kl"}
    after = m.state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"actor", "critic"}
    now = [*m.ref.parameters(), *m.reward_model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(frozen, now))
    # one optimizer step per mini-batch: 2 epochs x (4 rows / mini-batch of 2)
    assert all(s["step"] == 4 for s in opt.state.values())


def test_one_optimizer_with_actor_and_critic_groups_at_their_own_lr(parts, monkeypatch):
    m = _module(parts, critic_lr=5e-4)
    opt, scheduler = _optimize_by_hand(m, monkeypatch)
    actor = {id(p) for p in m.actor.parameters()}
    critic = {id(p) for p in m.critic.parameters()}
    frozen = {id(p) for p in (*m.ref.parameters(), *m.reward_model.parameters())}
    groups = [{id(p) for p in g["params"]} for g in opt.param_groups]
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3, 5e-4, 5e-4]
    assert groups[0] | groups[1] == actor and groups[2] | groups[3] == critic
    assert not frozen & set().union(*groups)
    assert [g["weight_decay"] for g in opt.param_groups][1::2] == [0.0, 0.0]
    assert scheduler.get_last_lr() == [1e-3, 1e-3, 5e-4, 5e-4]


def test_frozen_models_are_not_registered_but_follow_dtype_casts(parts):
    m = _module(parts)
    names = {name.split(".")[0] for name, _ in m.named_parameters()}
    assert names == {"actor", "critic"}
    m.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in m.ref.parameters())
    assert all(p.dtype == torch.float64 for p in m.reward_model.parameters())


def _with_trainer(m):
    m._trainer = _FakeTrainer()
    return m


def test_checkpoint_carries_kl_controller_and_skips_frozen_models(parts):
    m = _module(parts, adaptive_kl=True, target_kl=1.0, kl_horizon=100)
    m.kl_ctl.update(5.0, n_steps=10)
    ckpt = {"state_dict": m.state_dict()}
    m.on_save_checkpoint(ckpt)
    assert not any(k.startswith(FROZEN) for k in ckpt["state_dict"])
    assert ckpt[KL_STATE_KEY]["coef"] == pytest.approx(0.1 * 1.02)
    fresh = _module(parts, adaptive_kl=True, target_kl=1.0, kl_horizon=100)
    fresh.on_load_checkpoint(ckpt)
    fresh.load_state_dict(ckpt["state_dict"], strict=True)
    assert fresh.kl_ctl == m.kl_ctl


def test_checkpoint_of_an_older_version_with_frozen_weights_still_loads_strictly(parts):
    m = _module(parts)
    old = {f"ref.{k}": v for k, v in m.ref.state_dict().items()}
    ckpt = {"state_dict": {**m.state_dict(), **old}}
    m.on_load_checkpoint(ckpt)
    m.load_state_dict(ckpt["state_dict"], strict=True)


def test_frozen_models_stay_in_eval_mode_and_without_grad(parts):
    m = _module(parts)
    m.train()
    assert not any(x.training for x in (m.actor, m.critic, m.ref, m.reward_model))
    assert not any(p.requires_grad for p in m.ref.parameters())
    assert not any(p.requires_grad for p in m.reward_model.parameters())
    assert all(p.requires_grad for p in m.actor.parameters())


# --- inputs ------------------------------------------------------------------------------------


def _job(**kw):
    job = job_schema()(stage="ppo", **kw)
    job.optim.batch_size = job.optim.micro_batch_size = job.ppo.rollout_batch_size
    return job


def test_missing_policy_names_the_sft_command(tiny_kit):
    with pytest.raises(UsageError, match="recipe=tiny_sft"):
        build(_job(reward_model=str(tiny_kit["reward_model"])), None)


def test_missing_reward_model_names_the_rm_command(tiny_kit):
    with pytest.raises(UsageError, match="recipe=tiny_rm"):
        build(_job(policy=str(tiny_kit["policy"])), None)


def test_tokenizer_mismatch_names_both_models(tiny_kit, tiny_texts, tmp_path):
    other = make_tiny_kit(tmp_path, tiny_texts, vocab_size=300)
    job = _job(policy=str(tiny_kit["policy"]), reward_model=str(other["reward_model"]))
    with pytest.raises(UsageError) as err:
        build(job, None)
    assert str(tiny_kit["policy"]) in str(err.value) and str(other["reward_model"]) in str(
        err.value
    )


def test_rollout_batch_must_divide_into_minibatches(tiny_kit):
    job = _job(policy=str(tiny_kit["policy"]), reward_model=str(tiny_kit["reward_model"]))
    job.ppo.rollout_batch_size = 10
    job.optim.batch_size, job.optim.micro_batch_size = 4, 4
    with pytest.raises(UsageError, match="rollout_batch_size=10"):
        build(job, None)
