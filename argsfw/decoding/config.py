"""Schema of decoding settings (the ``decode`` config group). Plain, OmegaConf-compatible.

Methods: ``args-greedy``, ``args-stochastic``, ``args-greedy-large`` (reward-guided search)
and the baselines ``greedy``, ``top-k``, ``nucleus``, ``best-of-n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# `DecodeConfig.scorer` values; see argsfw.decoding.probe
SCORER_CHOICES = ("auto", "tree", "expanded", "full")


@dataclass
class DecodeConfig:
    """How to decode: method, reward weight w, candidates k, length, sampling knobs."""

    method: str = "args-greedy"
    weight: float = 1.0  # w in logit(v) + w * r([x, v])
    topk: int = 10  # k candidates scored by the RM per step (also k of top-k sampling)
    max_new_tokens: int = 128
    temperature: float = 0.7  # args-stochastic / top-k / nucleus / best-of-n sampling temperature
    top_p: float = 0.9  # nucleus
    num_samples: int = 4  # best-of-n: N
    chunk_size: Any = None  # args-greedy-large: int or "auto"
    # reward scorer: auto (the fastest the RM's probe verified) | tree | expanded | full
    scorer: str = "auto"
    stop_at_eos: bool = True
    batch_size: int = 8
    seed: int = 0  # per-prompt generators are seeded from (seed, prompt key): shard-independent
    # keep a too-long prompt's last tokens (BOS kept) instead of failing
    truncate_prompt: bool = False
    # log every step's candidates, rewards and choice (logger "argsfw.decoding", DEBUG level)
    debug: bool = False
    # the original's settings file: one JSON object per line (rm_weight, topk, mode, sample_temp);
    # predict writes one output per line
    config_file: str | None = None
