"""Baseline decoders run through the same loop as ARGS: greedy, top-k sampling, nucleus, best-of-N.

They share `decode_batch` with the reward-guided search, so stopping rules (EOS kept, then
stop; else ``max_new_tokens``), output shape, per-prompt randomness and accounting are the
same, and comparisons are fair.
"""

from __future__ import annotations

import torch

from argsfw.decoding.sampling import nucleus_filter, sample_rows, top_k_filter
from argsfw.decoding.search import StepContext


def greedy_chooser(logits: torch.Tensor, scorer, ctx: StepContext) -> tuple[torch.Tensor, None]:
    """Plain greedy: the argmax of the policy's logits [B, V] (same as ``model.generate`` greedy)."""
    return logits.argmax(-1), None


class TopKSampler:
    """Top-k sampling: sample from ``softmax(logits / temperature)`` restricted to the k most likely tokens."""

    def __init__(self, k: int, temperature: float):
        self.k, self.temperature = k, temperature

    def __call__(self, logits: torch.Tensor, scorer, ctx: StepContext) -> tuple[torch.Tensor, None]:
        top, ids = top_k_filter(logits / self.temperature, self.k)  # [B, k]
        idx = sample_rows(top.softmax(-1), ctx.generators)
        return ids.gather(1, idx[:, None])[:, 0], None


class NucleusSampler:
    """Nucleus (top-p) sampling at ``temperature``; ``top_p=1`` is plain ancestral sampling."""

    def __init__(self, top_p: float, temperature: float):
        self.top_p, self.temperature = top_p, temperature

    def __call__(self, logits: torch.Tensor, scorer, ctx: StepContext) -> tuple[torch.Tensor, None]:
        kept, ids = nucleus_filter(logits / self.temperature, self.top_p)  # [B, V] sorted
        idx = sample_rows(kept.softmax(-1), ctx.generators)
        return ids.gather(1, idx[:, None])[:, 0], None


def best_of_n(rewards: torch.Tensor, n: int) -> list[int]:
    """Index (0..n-1) of the best sample per prompt, from ``rewards`` [P*n] laid out prompt-major.

    Ties go to the earliest sample.
    """
    return rewards.view(-1, n).argmax(-1).tolist()
