"""Masked statistics and log-probability gathering over padded token batches.

Shapes: ``B`` batch rows, ``T`` token positions, ``V`` vocabulary. A mask is 1 (or True) on
positions that count and 0 on padding; it broadcasts against the values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of `values` where `mask` is set (over `dim`, or over everything when None)."""
    masked = values * mask.to(values.dtype)
    return masked.sum() if dim is None else masked.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` over the positions where `mask` is set.

    Returns a scalar when `dim` is None, else the per-slice means along `dim`. A slice with no
    masked positions gives 0 (not NaN): padding-only rows must not poison a batch.
    """
    m = mask.to(values.dtype)
    count = m.sum() if dim is None else m.sum(dim=dim)
    return masked_sum(values, m, dim) / count.clamp(min=1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked entries of `values` (a scalar), Bessel-corrected by default.

    Raises `ValueError` when fewer than two entries are masked and `unbiased` is set.
    """
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        n = mask.to(values.dtype).sum()
        if n < 2:
            raise ValueError(
                f"unbiased masked variance needs at least 2 masked entries, got {int(n)}"
            )
        var = var * n / (n - 1)
    return var


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise `values` to unit variance (and zero mean if `shift_mean`) over masked entries.

    Statistics come from masked positions only; unmasked positions are transformed too (their
    values are meaningless and callers ignore them). Returns a tensor shaped like `values`.
    """
    mean = masked_mean(values, mask)
    var = masked_var(values, mask, unbiased=False)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    return whitened if shift_mean else whitened + mean


def gather_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability of each label under `logits`.

    `logits` is ``[B, T, V]`` and `labels` ``[B, T]`` (already aligned: ``labels[:, t]`` is the
    token predicted by ``logits[:, t]``). Returns ``[B, T]``. Labels < 0 (ignore index) give 0.
    """
    # log_softmax in float32: bf16 logits lose the small differences PPO ratios depend on
    logp = F.log_softmax(logits.float(), dim=-1)
    safe = labels.clamp(min=0)
    out = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # [B, T]
    return out.masked_fill(labels < 0, 0.0)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position: ``[B, T, V]`` → ``[B, T]``."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)
