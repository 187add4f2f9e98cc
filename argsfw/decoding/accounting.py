"""Cost accounting for a decoding call: forward passes, tokens, time and peak memory.

Every engine call fills one `DecodeStats`; the predict loop stores it per batch and the
evaluation puts cost beside quality. Counters are incremented by the model wrappers
(`PolicyState`, the reward scorers), so they count what really ran.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class DecodeStats:
    """Counters of one decoding call (or the sum of several, see `merge`).

    ``llm_forwards``/``rm_forwards`` count model forward calls (one call may hold many rows
    and tokens); ``llm_tokens_in``/``rm_tokens_in`` count the token positions those calls
    processed, padding included (each prompt's own counts, padding excluded, are in its
    `Generation`: ``llm_tokens``, ``rm_tokens``, ``scored_steps``). ``peak_memory_bytes`` is CUDA ``max_memory_allocated``
    summed over the devices used, or on CPU the process's peak resident set size sampled
    every step (``memory_kind`` says which). ``rm_cache_bytes_peak`` is the largest reward
    model KV cache held during the call. ``scorer`` names the reward scorer that ran
    (``tree``, ``expanded``, ``full``; empty when none); ``rm_truncated`` counts candidate
    texts cut from the left to fit the reward model's context (full-sequence scoring only).
    """

    method: str = ""
    prompts: int = 0
    new_tokens: int = 0
    llm_forwards: int = 0
    rm_forwards: int = 0
    llm_tokens_in: int = 0
    rm_tokens_in: int = 0
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    memory_kind: str = "cpu_rss"
    rm_cache_bytes_peak: int = 0
    scorer: str = ""
    rm_truncated: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def prompts_per_second(self) -> float:
        return self.prompts / self.seconds if self.seconds > 0 else 0.0

    @property
    def rm_forwards_per_token(self) -> float:
        return self.rm_forwards / self.new_tokens if self.new_tokens else 0.0

    def merge(self, other: DecodeStats) -> DecodeStats:
        """Sum of two calls' counters (times add, peaks take the max); returns a new object."""
        out = DecodeStats(**{**asdict(self), "extra": dict(self.extra)})
        for name in (
            "prompts",
            "new_tokens",
            "llm_forwards",
            "rm_forwards",
            "llm_tokens_in",
            "rm_tokens_in",
            "rm_truncated",
        ):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.seconds = self.seconds + other.seconds
        out.peak_memory_bytes = max(self.peak_memory_bytes, other.peak_memory_bytes)
        out.rm_cache_bytes_peak = max(self.rm_cache_bytes_peak, other.rm_cache_bytes_peak)
        out.method = self.method or other.method
        out.scorer = self.scorer or other.scorer
        return out

    def as_dict(self) -> dict:
        """Flat JSON-ready dict with the derived rates."""
        d = asdict(self)
        d.update(
            tokens_per_second=self.tokens_per_second,
            prompts_per_second=self.prompts_per_second,
            rm_forwards_per_token=self.rm_forwards_per_token,
        )
        return d


def _rss_bytes() -> int:
    # why: /proc/self/statm is a cheap read (no psutil import on the hot path); other OSes
    # fall back to the lifetime peak from getrusage.
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Meter:
    """Clock and peak-memory sampler for one call; `sample()` is called once per step."""

    def __init__(self, stats: DecodeStats, devices: list[torch.device]):
        self.stats = stats
        self.cuda = sorted({d for d in devices if d.type == "cuda"}, key=str)
        self.stats.memory_kind = "cuda_max_allocated" if self.cuda else "cpu_rss"
        for d in self.cuda:
            torch.cuda.reset_peak_memory_stats(d)
        self.t0 = time.perf_counter()
        self.sample()

    def sample(self) -> None:
        if not self.cuda:
            self.stats.peak_memory_bytes = max(self.stats.peak_memory_bytes, _rss_bytes())

    def stop(self) -> DecodeStats:
        """Stop the clock and read the CUDA peaks; returns the filled stats."""
        if self.cuda:
            for d in self.cuda:
                torch.cuda.synchronize(d)
            self.stats.peak_memory_bytes = sum(
                torch.cuda.max_memory_allocated(d) for d in self.cuda
            )
        else:
            self.sample()
        self.stats.seconds = time.perf_counter() - self.t0
        return self.stats


def cache_bytes(cache) -> int:
    """Bytes held by a transformers `Cache`'s key/value tensors (0 for an empty cache)."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total
