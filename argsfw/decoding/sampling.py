"""Seeded, per-prompt randomness and the sampling filters (top-k, nucleus).

Each prompt gets its own `torch.Generator` seeded from ``(seed, prompt key)``, so a prompt's
sample does not depend on which batch, rank or device it landed in: the predict loop may shard
and batch prompts any way it likes.
"""

from __future__ import annotations

import hashlib

import torch


def prompt_seed(seed: int, key: object, sample: int = 0) -> int:
    """A stable 63-bit seed from ``(seed, key, sample)`` (independent of Python's hash salt)."""
    digest = hashlib.blake2b(f"{seed}|{sample}|{key!r}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def make_generator(seed: int, key: object, sample: int = 0) -> torch.Generator:
    """A CPU generator for one prompt (CPU so the draw is the same whatever device decodes)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(prompt_seed(seed, key, sample))
    return g


def sample_rows(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Draw one index per row of ``probs`` [B, n] with row b's own generator; returns [B] (probs' device).

    Inverse-CDF sampling with one uniform per row and step: the randomness consumed does not
    depend on n, and tiny float differences between two equivalent computations only matter
    if the uniform falls within them of a bucket edge.
    """
    cdf = probs.float().cumsum(-1).cpu()  # [B, n]
    u = torch.stack([torch.rand((), generator=g) for g in generators])  # [B]
    idx = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).clamp(max=probs.shape[-1] - 1)
    return idx[:, 0].to(probs.device)


def top_k_filter(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest ``logits`` [B, V] and their ids, both [B, k], sorted descending."""
    return logits.topk(k, dim=-1)


def nucleus_filter(logits: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [B, V] sorted descending with everything past the top-p mass set to -inf, and the ids.

    The most likely token always survives, so ``top_p`` near 0 degenerates to greedy.
    """
    sorted_logits, ids = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs  # mass strictly before each token
    sorted_logits = sorted_logits.masked_fill(before >= top_p, float("-inf"))
    return sorted_logits, ids
