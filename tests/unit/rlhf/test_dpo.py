"""The DPO loss against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from argsfw.rlhf.dpo import dpo_loss


def test_dpo_loss_by_hand():
    # h_w = -1.0 - (-1.5) = 0.5, h_l = -2.0 - (-1.5) = -0.5, z = 0.5 * (0.5 + 0.5) = 0.5
    pc, pr = torch.tensor([-1.0]), torch.tensor([-2.0])
    rc, rr = torch.tensor([-1.5]), torch.tensor([-1.5])
    loss, r_w, r_l = dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.5)))  # 0.474077
    assert (r_w.item(), r_l.item()) == pytest.approx((0.25, -0.25))
    smooth, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.2)
    # 0.8 * log(1 + e^-0.5) + 0.2 * log(1 + e^0.5)
    assert smooth.item() == pytest.approx(0.8 * 0.474077 + 0.2 * 0.974077, abs=1e-6)


def test_dpo_loss_is_log2_when_the_policy_is_its_reference_and_averages_pairs():
    lp = torch.tensor([-3.0, -7.0, -1.0])
    loss, r_w, r_l = dpo_loss(lp, lp - 1, lp, lp - 1, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2)) and r_w.abs().max() == 0 == r_l.abs().max()
    # two pairs: the mean of each pair's loss
    pc, pr = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0])
    zero = torch.zeros(2)
    loss, _, _ = dpo_loss(pc, pr, zero, zero, beta=2.0)
    expected = (math.log(2) + math.log(1 + math.exp(-2.0))) / 2
    assert loss.item() == pytest.approx(expected)
    assert not r_w.requires_grad
