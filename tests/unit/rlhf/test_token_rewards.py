"""Hand-computed values of the token-level reward-model losses (GenARM, FaRMA-style, distillation)."""

from __future__ import annotations

import math

import pytest
import torch

from argsfw.rlhf.token_rewards import (
    centered,
    distill_loss,
    farma_bt_loss,
    farma_consistency_loss,
    genarm_loss,
    last_token_values,
    response_logprob_sum,
    scheduled_loss,
    sequence_logprob_sum,
    taken_token_values,
    top1_agreement,
)

# One row, T=3 tokens, V=3: logits[t] scores the token at t+1.
PROBS = torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]]])
IDS = torch.tensor([[2, 0, 2]])


def test_sequence_logprob_sum_over_the_response_tokens():
    logits = torch.log(PROBS) + 3.0  # a constant shift: log-softmax undoes it
    both = torch.tensor([[0, 1, 1]])
    assert sequence_logprob_sum(logits, IDS, both).item() == pytest.approx(
        math.log(0.5) + math.log(0.8)
    )
    assert sequence_logprob_sum(logits, IDS, both, normalize=True).item() == pytest.approx(
        (math.log(0.5) + math.log(0.8)) / 2
    )
    last_only = torch.tensor([[1, 0, 1]])  # mask[:, 0] never counts
    assert sequence_logprob_sum(logits, IDS, last_only).item() == pytest.approx(math.log(0.8))
    empty = torch.tensor([[1, 0, 0]])
    assert sequence_logprob_sum(logits, IDS, empty, normalize=True).item() == 0.0


def test_response_logprob_sum_reads_the_head_at_the_reply_only():
    identity = torch.nn.Linear(3, 3, bias=False)
    identity.weight.data = torch.eye(3)
    hidden = torch.log(PROBS) + 3.0  # the identity head makes these the logits
    both, empty = torch.tensor([[0, 1, 1]]), torch.tensor([[1, 0, 0]])
    assert response_logprob_sum(hidden, identity, IDS, both).item() == pytest.approx(
        math.log(0.5) + math.log(0.8)
    )
    assert response_logprob_sum(hidden, identity, IDS, both, normalize=True).item() == (
        pytest.approx((math.log(0.5) + math.log(0.8)) / 2)
    )
    assert response_logprob_sum(hidden, identity, IDS, empty, normalize=True).item() == 0.0
    # rows of different lengths, padding and prompt positions: sequence_logprob_sum's values
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50)
    h, ids = torch.randn(3, 7, 8), torch.randint(0, 50, (3, 7))
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0]])
    for norm in (False, True):
        want = sequence_logprob_sum(head(h), ids, mask, norm)
        assert torch.allclose(response_logprob_sum(h, head, ids, mask, norm), want, atol=1e-5)
    calls = []
    head.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
    response_logprob_sum(h, head, ids, mask)
    assert calls == [5]  # the five positions that predict a reply token: no prompt, no padding


def test_genarm_loss_hand_computed():
    r_w, r_l = torch.tensor([-10.0, -4.0]), torch.tensor([-20.0, -2.0])
    # beta 0.05: gaps 0.5 and -0.1
    expected = -(math.log(1 / (1 + math.exp(-0.5))) + math.log(1 / (1 + math.exp(0.1)))) / 2
    assert genarm_loss(r_w, r_l, beta=0.05).item() == pytest.approx(expected, rel=1e-6)
    with_margin = -(math.log(1 / (1 + math.exp(-0.3))) + math.log(1 / (1 + math.exp(0.3)))) / 2
    assert genarm_loss(r_w, r_l, beta=0.05, margin=0.2).item() == pytest.approx(
        with_margin, rel=1e-6
    )


def test_token_values_read_the_raw_head_at_the_previous_position():
    logits = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])
    assert taken_token_values(logits, IDS).tolist() == [[1.0, 6.0]]
    two = torch.cat([logits, -logits])
    ids = torch.tensor([[2, 0, 2], [0, 1, 0]])  # row 1 is [0, 1] + a pad
    assert last_token_values(two, ids, torch.tensor([2, 1])).tolist() == [6.0, -2.0]


def test_farma_bt_loss_is_bradley_terry_on_the_values():
    v_w, v_l = torch.tensor([2.0]), torch.tensor([1.0])
    assert farma_bt_loss(v_w, v_l).item() == pytest.approx(math.log(1 + math.exp(-1.0)))
    assert farma_bt_loss(v_w, v_l, margin=1.0).item() == pytest.approx(math.log(2.0))


def test_farma_consistency_pulls_the_taken_value_to_the_next_max():
    logits = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]], requires_grad=True)
    mask = torch.tensor([[0, 1, 1]])
    # t=1: taken logits[0][0] = 1, next max = max(logits[1]) = 6 -> 25
    # t=2: taken logits[1][2] = 6, next max = max(logits[2]) = 9 -> 9
    loss = farma_consistency_loss(logits, IDS, mask)
    assert loss.item() == pytest.approx((25 + 9) / 2)
    loss.backward()
    grad = logits.grad[0]
    # stop_grad: only the taken entries get gradient, d/dx (x - b)^2 / 2 = (x - b)
    assert grad[0].tolist() == [-5.0, 0.0, 0.0]
    assert grad[1].tolist() == [0.0, 0.0, -3.0]
    assert grad[2].tolist() == [0.0, 0.0, 0.0]
    logits.grad = None
    farma_consistency_loss(logits, IDS, mask, stop_grad=False).backward()
    assert logits.grad[0, 1].tolist() == [0.0, 0.0, -3.0 + 5.0]  # both sides of t=1, t=2
    assert logits.grad[0, 2].tolist() == [0.0, 0.0, 3.0]


def test_farma_consistency_respects_the_mask_per_row():
    logits = torch.zeros(2, 3, 2)
    logits[0, 1] = torch.tensor([0.0, 2.0])  # row 0, t=2 term: taken logits[1][ids[2]]
    ids = torch.tensor([[0, 0, 0], [0, 0, 0]])
    mask = torch.tensor([[0, 1, 1], [0, 1, 0]])
    # row 0: t=1: taken 0, max(logits[1]) = 2 -> 4; t=2: taken 0, max 0 -> 0; mean 2
    # row 1: t=1: 0 vs 0 -> 0; mean 0. Row mean: 1
    assert farma_consistency_loss(logits, ids, mask).item() == pytest.approx(1.0)


def test_distill_loss_centres_per_prefix():
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[11.0, 12.0, 13.0], [1.0, 0.0, -1.0]])  # row 0: same up to +10
    assert centered(target)[1].tolist() == [1.0, 0.0, -1.0]
    assert distill_loss(pred, target).item() == pytest.approx((0 + 1 + 0 + 1) / 6)
    assert distill_loss(pred, target, center=False).item() == pytest.approx(
        (100 * 3 + 1 + 0 + 1) / 6
    )


def test_top1_agreement():
    pred = torch.tensor([[0.1, 0.9, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    target = torch.tensor([[0.0, 5.0, 1.0], [0.0, 3.0, 0.0], [-1.0, -2.0, 0.0]])
    assert top1_agreement(pred, target).item() == pytest.approx(2 / 3)


def test_scheduled_loss_sums_or_alternates_by_step():
    bt, cons = torch.tensor(2.0), torch.tensor(10.0)
    assert scheduled_loss(bt, cons, 0.5, "sum", 3).item() == 7.0
    assert [scheduled_loss(bt, cons, 0.5, "alternate", s).item() for s in range(4)] == [
        2.0,
        5.0,
        2.0,
        5.0,
    ]
    with pytest.raises(ValueError, match="unknown schedule"):
        scheduled_loss(bt, cons, 0.5, "both", 0)
