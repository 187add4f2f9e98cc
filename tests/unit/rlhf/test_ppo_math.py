"""Hand-computed values for the PPO math in argsfw.rlhf (gae, kl, ppo, rollout)."""

from __future__ import annotations

import math

import pytest
import torch

from argsfw.rlhf.gae import gae
from argsfw.rlhf.kl import (
    KLController,
    adaptive_kl_update,
    kl_estimate,
    kl_k1,
    kl_k3,
    token_rewards,
)
from argsfw.rlhf.ppo import ppo_policy_loss, ppo_value_loss
from argsfw.rlhf.rollout import Rollout, positions_from_mask, response_mask_after_eos


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# --- GAE -------------------------------------------------------------------------------------


def test_gae_hand_computed_gamma1_lambda_half():
    # r = [0, 0, 1], V = [.5, .25, .5], γ = 1, λ = .5
    # t=2: δ = 1 - .5 = .5            A2 = .5
    # t=1: δ = 0 + .5 - .25 = .25     A1 = .25 + .5·.5 = .5
    # t=0: δ = 0 + .25 - .5 = -.25    A0 = -.25 + .5·.5 = 0
    adv, ret = gae(t([0, 0, 1]), t([0.5, 0.25, 0.5]), t([1, 1, 1]), gamma=1.0, lam=0.5)
    assert torch.allclose(adv, t([0.0, 0.5, 0.5]))
    assert torch.allclose(ret, t([0.5, 0.75, 1.0]))


def test_gae_lambda1_gives_discounted_return_minus_value():
    # λ = 1: A_t = G_t - V_t with G = [.25, .5, 1] for γ = .5 and a reward of 1 at the end
    adv, ret = gae(t([0, 0, 1]), t([0.5, 0.25, 0.5]), t([1, 1, 1]), gamma=0.5, lam=1.0)
    assert torch.allclose(adv, t([-0.25, 0.25, 0.5]))
    assert torch.allclose(ret, t([0.25, 0.5, 1.0]))


def test_gae_padding_after_eos_does_not_contribute():
    # the third position is padding: its reward 99 and value 77 must be ignored, and the
    # episode ends at t=1 (V(s_2) = 0). γ=1, λ=.5:
    # t=1: δ = 1 - .25 = .75 → A1 = .75;  t=0: δ = .25 - .5 → A0 = -.25 + .5·.75 = .125
    adv, ret = gae(t([0, 1, 99]), t([0.5, 0.25, 77]), t([1, 1, 0]), gamma=1.0, lam=0.5)
    assert torch.allclose(adv, t([0.125, 0.75, 0.0]))
    assert torch.allclose(ret, t([0.625, 1.0, 0.0]))


def test_gae_rows_are_independent():
    rewards = torch.cat([t([0, 0, 1]), t([0, 1, 99])])
    values = torch.cat([t([0.5, 0.25, 0.5]), t([0.5, 0.25, 77])])
    mask = torch.cat([t([1, 1, 1]), t([1, 1, 0])])
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    assert torch.allclose(adv, torch.cat([t([0.0, 0.5, 0.5]), t([0.125, 0.75, 0.0])]))


# --- KL ----------------------------------------------------------------------------------------


def test_kl_estimators_hand_computed():
    logp, ref = t([-1.0, -2.0]), t([-1.5, -1.0])
    assert torch.allclose(kl_k1(logp, ref), t([0.5, -1.0]))
    # log ρ = ref - logp = [-.5, 1]: k3 = e^{log ρ} - 1 - log ρ
    expected = t([math.exp(-0.5) - 1 + 0.5, math.e - 1 - 1])
    assert torch.allclose(kl_k3(logp, ref), expected)
    assert torch.allclose(kl_estimate(logp, ref, "k3"), expected)
    assert (kl_k3(torch.randn(50), torch.randn(50)) >= 0).all()
    with pytest.raises(ValueError, match="k2"):
        kl_estimate(logp, ref, "k2")


def test_kl_estimators_are_zero_for_identical_policies():
    x = torch.randn(3, 4)
    assert torch.equal(kl_k1(x, x), torch.zeros(3, 4))
    assert torch.equal(kl_k3(x, x), torch.zeros(3, 4))


def test_token_rewards_put_score_on_last_response_token_and_mask_padding():
    scores = t(2.0, 3.0)
    kl = t([0.1, 0.2, 0.3], [0.5, 0.5, 9.0])
    mask = t([1, 1, 1], [1, 1, 0])
    out = token_rewards(scores, kl, mask, kl_coef=0.5)
    assert torch.allclose(out, t([-0.05, -0.1, 1.85], [-0.25, 2.75, 0.0]))


def test_token_rewards_empty_row_gets_nothing():
    out = token_rewards(t(5.0), t([1.0, 1.0]), t([0, 0]), kl_coef=0.1)
    assert torch.equal(out, t([0.0, 0.0]))


def test_adaptive_kl_update_hand_computed():
    # K_β = 100 / 1000 = .1; e clipped to ±.2
    assert adaptive_kl_update(0.1, 9.0, 6.0, 1000, 100) == pytest.approx(0.1 * 1.02)
    assert adaptive_kl_update(0.1, 3.0, 6.0, 1000, 100) == pytest.approx(0.1 * 0.98)
    assert adaptive_kl_update(0.1, 6.6, 6.0, 1000, 100) == pytest.approx(0.1 * 1.01)
    with pytest.raises(ValueError):
        adaptive_kl_update(0.1, 1.0, 0.0, 1000, 100)


def test_kl_controller_fixed_and_adaptive_and_state_round_trip():
    fixed = KLController(coef=0.2)
    assert fixed.update(100.0, 32) == 0.2
    ctl = KLController(coef=0.1, adaptive=True, target_kl=6.0, horizon=1000)
    ctl.update(9.0, 100)
    assert ctl.coef == pytest.approx(0.102)
    fresh = KLController(coef=0.1, adaptive=True, target_kl=6.0, horizon=1000)
    fresh.load_state_dict(ctl.state_dict())
    assert fresh == ctl


# --- PPO losses --------------------------------------------------------------------------------


def test_policy_loss_hand_computed_with_clipping_and_padding():
    # ratios [1.5, .5, 1, e^5], advantages [1, 1, -1, 10], ε = .2; the 4th token is padding
    old = torch.zeros(1, 4)
    logp = torch.log(t([1.5, 0.5, 1.0, math.exp(5)])).unsqueeze(0).requires_grad_()
    adv = t([1.0, 1.0, -1.0, 10.0]).unsqueeze(0)
    mask = t([1, 1, 1, 0]).unsqueeze(0)
    out = ppo_policy_loss(logp, old, adv, mask, clip_range=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(-.5, -.8) = -.5; token 2: 1
    assert out.loss.item() == pytest.approx((-1.2 - 0.5 + 1.0) / 3)
    assert out.clip_frac.item() == pytest.approx(1 / 3)
    assert out.approx_kl.item() == pytest.approx(
        0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 3
    )
    out.loss.backward()
    # d/dlogp of -A·ρ is -A·ρ; the clipped token and the padding token get no gradient
    assert torch.allclose(logp.grad, t([0.0, -0.5 / 3, 1.0 / 3, 0.0]).unsqueeze(0))


def test_policy_loss_is_minus_mean_advantage_at_ratio_one():
    adv = torch.randn(2, 5)
    mask = torch.ones(2, 5)
    out = ppo_policy_loss(torch.zeros(2, 5), torch.zeros(2, 5), adv, mask)
    assert out.loss.item() == pytest.approx(-adv.mean().item(), abs=1e-6)
    assert out.clip_frac.item() == 0.0


def test_value_loss_hand_computed_with_clipping_and_padding():
    old = t([0.0, 0.0, 1.0, 0.0])
    values = t([0.5, -0.1, 1.0, 50.0])
    returns = t([1.0, 0.0, 0.0, -50.0])
    mask = t([1, 1, 1, 0])
    out = ppo_value_loss(values, old, returns, mask, clip_range_value=0.2)
    # token 0: V_clip = .2: max(.25, .64) = .64; token 1: .01; token 2: 1 → ½·1.65/3
    assert out.loss.item() == pytest.approx(0.5 * 1.65 / 3)
    assert out.clip_frac.item() == pytest.approx(1 / 3)


# --- rollout helpers ---------------------------------------------------------------------------


def test_response_mask_keeps_first_eos_and_drops_what_follows():
    eos = 2
    response = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 0, 0, 0]])
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    assert torch.equal(response_mask_after_eos(response, eos), expected)
    assert torch.equal(response_mask_after_eos(response, [9, 2]), expected)


def test_positions_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert torch.equal(positions_from_mask(mask), torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]))


def _rollout(b: int) -> Rollout:
    ids = torch.arange(b).unsqueeze(1).repeat(1, 5)  # row i is all i
    r = torch.ones(b, 3)
    return Rollout(
        ids, ids * 0 + 1, ids, r, r, r, r, r, r, r, torch.arange(b).float(), torch.zeros(b)
    )


def test_rollout_minibatches_cover_every_row_once_and_keep_rows_aligned():
    ro = _rollout(7)
    assert ro.prompt_length == 2
    seen = []
    for mb in ro.minibatches(3, torch.Generator().manual_seed(0)):
        assert len(mb) <= 3
        assert torch.equal(mb.input_ids[:, 0].float(), mb.scores)  # rows stay aligned
        seen += mb.scores.long().tolist()
    assert sorted(seen) == list(range(7))
    with pytest.raises(ValueError):
        next(ro.minibatches(0))
