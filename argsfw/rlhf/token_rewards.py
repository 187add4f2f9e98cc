"""Losses of the token-level reward models: GenARM's autoregressive RM and FaRMA-style heads.

Two ways to get the reward of every candidate next token from ONE reward-model forward:

* **Autoregressive RM** (GenARM, Xu et al. 2025): a causal LM π_r whose response log-likelihood
  is the reward, ``r(x, y) = Σ_t log π_r(y_t | x, y_<t)``, trained with
  ``−log σ(β·(r(x, y_w) − r(x, y_l)))`` and no reference model.
* **Token RM head** (FaRMA, Rashid et al. 2025): a causal LM whose raw vocabulary logits are
  rewards, ``r(x, y_<t, v) = head(x, y_<t)[v]``. The reward of a whole response is the head
  value of its last token read at the position before it; a Bradley–Terry loss trains those
  values and a consistency loss pulls ``r(x, y_<t, y_t)`` towards ``max_v r(x, y_≤t, v)``.
  Or, distilled: the head regresses an existing sequence RM's rewards of k candidates.

Every function takes *unshifted* tensors: ``logits[:, t]`` is the model's output after reading
token ``t``, so it scores the token at ``t + 1``. Masks mark response tokens of ``ids``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from argsfw.rlhf.pairwise import bradley_terry_loss


def sequence_logprob_sum(
    logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, normalize: bool = False
) -> torch.Tensor:
    """GenARM's reward ``Σ_t log softmax(logits[t-1])[ids[t]]`` over the tokens where `mask` is 1.

    `logits` ``[B, T, V]``, `ids` and `mask` ``[B, T]`` (``mask[:, 0]`` is ignored: no token
    predicts the first one). With `normalize` the sum is divided by the number of masked
    tokens (at least 1). Returns ``[B]`` float32.
    """
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [B, T-1, V]
    taken = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
    m = mask[:, 1:].float()
    total = (taken * m).sum(-1)
    return total / m.sum(-1).clamp(min=1.0) if normalize else total


def response_logprob_sum(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    normalize: bool = False,
) -> torch.Tensor:
    """`sequence_logprob_sum` of ``head(hidden)``, with the vocabulary head read only at the
    positions that predict a masked token.

    `hidden` ``[B, T, H]`` are the final hidden states the head maps to logits. DPO and the ARM
    need log-probabilities of the reply's tokens only; a chat prompt is most of a pair's tokens
    and a 49k-token vocabulary makes the head and its softmax most of a fit's work, so the
    prompt's and the padding's logits are never made (transformers' ``logits_to_keep`` keeps a
    suffix, not a mask). Returns ``[B]`` float32.
    """
    predicts = mask[:, 1:].bool()  # position t-1 predicts token t
    rows, cols = predicts.nonzero(as_tuple=True)
    logp = torch.log_softmax(head(hidden[:, :-1][rows, cols]).float(), dim=-1)  # [N, V]
    taken = logp.gather(-1, ids[:, 1:][rows, cols][:, None]).squeeze(-1)  # [N]
    total = torch.zeros(ids.shape[0], dtype=taken.dtype, device=taken.device)
    total = total.index_add(0, rows, taken)
    return total / predicts.sum(-1).clamp(min=1).float() if normalize else total


def genarm_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, beta: float, margin: float = 0.0
) -> torch.Tensor:
    """Mean of ``−log σ(β·(r_chosen − r_rejected) − margin)`` over the pairs (``[N]`` each)."""
    return bradley_terry_loss(beta * r_chosen.float(), beta * r_rejected.float(), margin)


def taken_token_values(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Raw head values of the tokens actually taken: ``[B, T-1]``, entry t-1 is ``logits[t-1][ids[t]]``.

    That is ``r(x, y_<t, y_t)`` of a token-RM head for every position t ≥ 1 of `ids`.
    """
    return logits[:, :-1].float().gather(-1, ids[:, 1:, None]).squeeze(-1)


def last_token_values(logits: torch.Tensor, ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """A token-RM head's reward of each whole row: ``logits[b, last_b − 1][ids[b, last_b]]``.

    `last` ``[B]`` is the index of each row's last real token (≥ 1). Returns ``[B]`` float32.
    """
    rows = torch.arange(ids.shape[0], device=ids.device)
    return logits[rows, last - 1].float().gather(-1, ids[rows, last][:, None]).squeeze(-1)


def farma_bt_loss(
    v_chosen: torch.Tensor, v_rejected: torch.Tensor, margin: float = 0.0
) -> torch.Tensor:
    """Bradley–Terry loss on the last-token head values of chosen and rejected replies (``[N]``)."""
    return bradley_terry_loss(v_chosen, v_rejected, margin)


def farma_consistency_loss(
    logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, stop_grad: bool = True
) -> torch.Tensor:
    """Consistency of a token-RM head along each response: ``(r(x, y_<t, y_t) − max_v r(x, y_≤t, v))²``.

    The value of a prefix is the value of its best continuation. `mask` ``[B, T]`` marks the
    tokens t whose term counts (response tokens); each term needs ``logits[t]``, so every
    masked t must be a real token of the row. Per-row mean over masked tokens, then row mean
    (independent of how a batch is split into micro-batches).

    ``stop_grad`` (default) detaches the max side, a semi-gradient target as in TD learning:
    the value of a token is pulled towards that of its best continuation, but the
    continuation's values (anchored by the Bradley–Terry loss at each reply's end) are not
    pulled back towards it. FaRMA's reference code lets the gradient flow through both sides.
    """
    taken = taken_token_values(logits, ids)  # [B, T-1], r(x, y_<t, y_t) for t = 1..T-1
    best = logits[:, 1:].float().max(-1).values  # [B, T-1], max_v r(x, y_≤t, v)
    if stop_grad:
        best = best.detach()
    m = mask[:, 1:].float()
    per_row = ((taken - best) ** 2 * m).sum(-1) / m.sum(-1).clamp(min=1.0)
    return per_row.mean()


def scheduled_loss(
    bt: torch.Tensor, consistency: torch.Tensor, weight: float, schedule: str, step: int
) -> torch.Tensor:
    """The token-RM objective of optimizer step `step`: ``bt + weight·consistency`` (``"sum"``),
    or, ``"alternate"``, ``bt`` on even steps and ``weight·consistency`` on odd ones."""
    if schedule == "sum":
        return bt + weight * consistency
    if schedule == "alternate":
        return bt if step % 2 == 0 else weight * consistency
    raise ValueError(f"unknown schedule {schedule!r}; choose sum or alternate")


def centered(values: torch.Tensor) -> torch.Tensor:
    """``values`` ``[N, k]`` minus each row's mean."""
    return values - values.mean(-1, keepdim=True)


def distill_loss(pred: torch.Tensor, target: torch.Tensor, center: bool = True) -> torch.Tensor:
    """MSE between a token-RM head's values and a sequence RM's rewards of the same k candidates.

    `pred` and `target` ``[N, k]``: N prefixes, k candidate next tokens each. With `center`
    both are centred per prefix first. Why that is legitimate: the ARGS rule ranks the
    candidates of one step by ``logit(v) + w·r(v)``, so a constant added to all k rewards of a
    step changes nothing; only differences within a prefix matter, and the head need not learn
    each prefix's offset. Their scale is kept, so a weight w tuned for the sequence RM carries over.
    """
    pred, target = pred.float(), target.float()
    if center:
        pred, target = centered(pred), centered(target)
    return F.mse_loss(pred, target)


def top1_agreement(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of rows of ``[N, k]`` whose argmax candidate is the same in `pred` and `target`."""
    return (pred.argmax(-1) == target.argmax(-1)).float().mean()
