"""Hand-computed values of the shared tensor functions (masked stats, pairwise and LM losses)."""

from __future__ import annotations

import math

import pytest
import torch

from argsfw.rlhf.lm import IGNORE_INDEX, causal_lm_loss, token_count
from argsfw.rlhf.pairwise import bradley_terry_loss, pairwise_accuracy, reward_gap
from argsfw.rlhf.stats import (
    entropy_from_logits,
    gather_logprobs,
    masked_mean,
    masked_var,
    masked_whiten,
)


def test_masked_mean_scalar_and_per_row():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 1]])
    assert masked_mean(values, mask).item() == pytest.approx((1 + 2 + 6) / 3)
    assert masked_mean(values, mask, dim=1).tolist() == pytest.approx([1.5, 6.0])


def test_masked_mean_of_empty_row_is_zero_not_nan():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[1, 1], [0, 0]])
    assert masked_mean(values, mask, dim=1).tolist() == [1.5, 0.0]


def test_masked_var_and_whiten():
    values = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1, 1, 1, 0])
    assert masked_var(values, mask).item() == pytest.approx(1.0)  # unbiased var of 1, 2, 3
    assert masked_var(values, mask, unbiased=False).item() == pytest.approx(2 / 3)
    w = masked_whiten(values, mask)
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_var(w, mask, unbiased=False).item() == pytest.approx(1.0, rel=1e-5)
    kept = masked_whiten(values, mask, shift_mean=False)
    assert masked_mean(kept, mask).item() == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(values, torch.tensor([1, 0, 0, 0]))


def test_gather_logprobs_hand_computed():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))  # [1, 2, 3]
    labels = torch.tensor([[0, 2]])
    out = gather_logprobs(logits, labels)
    assert out.tolist()[0] == pytest.approx([math.log(0.5), math.log(0.8)])
    assert gather_logprobs(logits, torch.tensor([[1, IGNORE_INDEX]])).tolist()[0] == pytest.approx(
        [math.log(0.25), 0.0]
    )


def test_entropy_of_uniform_is_log_v():
    assert entropy_from_logits(torch.zeros(2, 3, 5)).flatten().tolist() == pytest.approx(
        [math.log(5)] * 6
    )


def test_bradley_terry_hand_values():
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    # -log σ(1) = 0.313262, -log σ(0) = 0.693147
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(
        (0.313262 + 0.693147) / 2, abs=1e-6
    )
    # margin 1: -log σ(0) and -log σ(-1) = 1.313262
    assert bradley_terry_loss(chosen, rejected, margin=1.0).item() == pytest.approx(
        (0.693147 + 1.313262) / 2, abs=1e-6
    )
    assert bradley_terry_loss(
        torch.tensor([100.0]), torch.tensor([-100.0])
    ).item() == pytest.approx(0.0)
    assert math.isfinite(bradley_terry_loss(torch.tensor([-100.0]), torch.tensor([100.0])).item())
    assert pairwise_accuracy(chosen, rejected).item() == 0.5  # a tie counts as wrong
    assert reward_gap(chosen, rejected).item() == 0.5
    with pytest.raises(ValueError):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))


def test_causal_lm_loss_hand_computed():
    # V=2, uniform logits: every labelled token costs log 2, whatever is masked
    logits = torch.zeros(2, 4, 2)
    labels = torch.tensor(
        [[IGNORE_INDEX, IGNORE_INDEX, 1, 0], [IGNORE_INDEX, 1, IGNORE_INDEX, IGNORE_INDEX]]
    )
    assert causal_lm_loss(logits, labels).item() == pytest.approx(math.log(2))
    assert token_count(labels) == 3
    # row 0 predicts token 1 at t=2 with p=0.8 and token 0 at t=3 with p=0.5; row 1 with p=0.5
    logits[0, 1] = torch.log(torch.tensor([0.2, 0.8]))
    row0 = (-math.log(0.8) - math.log(0.5)) / 2
    assert causal_lm_loss(logits, labels).item() == pytest.approx(
        (row0 + math.log(2)) / 2, abs=1e-6
    )


def test_causal_lm_loss_is_split_invariant():
    # the mean of per-micro-batch losses equals the loss of the whole batch (rows of unequal length)
    torch.manual_seed(0)
    logits = torch.randn(8, 6, 7)
    labels = torch.randint(0, 7, (8, 6))
    labels[torch.rand(8, 6) < 0.4] = IGNORE_INDEX
    whole = causal_lm_loss(logits, labels)
    parts = torch.stack([causal_lm_loss(logits[i : i + 1], labels[i : i + 1]) for i in range(8)])
    assert parts.mean().item() == pytest.approx(whole.item(), abs=1e-6)
