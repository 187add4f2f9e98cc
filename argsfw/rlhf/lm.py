"""The causal language-model loss of SFT, padding-aware and accumulation-invariant."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: each sequence's mean over its labelled tokens, averaged over rows.

    `logits` ``[B, T, V]``, `labels` ``[B, T]`` unshifted (``labels[:, t]`` is the token at t,
    ``IGNORE_INDEX`` where no loss is wanted: prompt, padding). Returns a scalar.

    Why per-sequence mean then row mean (not one mean over all tokens of the micro-batch): the
    result is then independent of how a global batch is split into micro-batches, so batch 1 ×
    accumulation 8 gives the same gradient as batch 8 × accumulation 1. Rows without any
    labelled token contribute 0 and still count in the row mean (consistent across splits).
    """
    shift_logits = logits[:, :-1].float()  # [B, T-1, V] predicts tokens 1..T-1
    shift_labels = labels[:, 1:]  # [B, T-1]
    tok = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view_as(shift_labels)  # [B, T-1]
    mask = (shift_labels != IGNORE_INDEX).float()
    per_row = (tok * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # [B]
    return per_row.mean()


def token_count(labels: torch.Tensor) -> int:
    """Number of tokens that carry loss in an unshifted ``[B, T]`` label tensor."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())
