"""Schema of decoding settings (the ``decode`` config group). Plain, OmegaConf-compatible.

Methods: ``args-greedy``, ``args-stochastic``, ``args-greedy-large``, ``args-gated`` (reward-guided
search), the baselines ``greedy``, ``top-k``, ``nucleus``, ``best-of-n``, and the token-level-RM
methods ``genarm``, ``genarm-greedy``, ``token-rm``, ``token-rm-stochastic``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from argsfw.decoding.types import ARGS_METHODS, METHODS, DecodeInputError, resolve_method

# `DecodeConfig.scorer` values; see argsfw.decoding.probe
SCORER_CHOICES = ("auto", "tree", "expanded", "full")
DEFAULT_TEMPERATURE = 0.7  # the sampling methods' temperature when none is given (not genarm's)


@dataclass
class DecodeConfig:
    """How to decode: method, reward weight w, candidates k, length, sampling knobs."""

    method: str = "args-greedy"
    weight: float = 1.0  # w in logit(v) + w * r([x, v]) (ARGS and token-rm methods)
    alpha: float = 1.0  # genarm: next-token logits (log pi_base + alpha * log pi_r) / (1 + alpha)
    topk: int = 10  # k candidates scored by the RM per step (also k of top-k sampling)
    max_new_tokens: int = 128
    # sampling temperature of args-stochastic / token-rm-stochastic / top-k / nucleus / best-of-n /
    # genarm (applied after genarm's 1/(1+alpha)). None: 0.7, but for genarm GenARM's rule
    # 1/(1+alpha), which samples the paper's pi_decode = pi_base*pi_r^alpha (`sampling_temperature`)
    temperature: float | None = None
    top_p: float = 0.9  # nucleus
    num_samples: int = 4  # best-of-n: N
    chunk_size: Any = None  # args-greedy-large: int or "auto"
    # args-gated: tau in [0, 1]; a step calls the RM only where the policy's top-1 probability
    # is <= tau (1: every step, = args-greedy; 0: never, = greedy)
    gate_threshold: float = 0.5
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


def sampling_temperature(s: DecodeConfig) -> float:
    """The temperature `s` samples at: ``s.temperature``, else GenARM's ``1 / (1 + alpha)`` for
    sampling genarm (its logits are already divided by ``1 + alpha``, so this samples
    ``pi_base * pi_r^alpha`` at temperature 1), else `DEFAULT_TEMPERATURE`."""
    if s.temperature is not None:
        return float(s.temperature)
    try:
        method = resolve_method(s.method)
    except DecodeInputError:
        method = s.method
    # only sampling genarm: genarm-greedy ignores it, and keeps the default its runs recorded
    if method == "genarm":
        return 1.0 / (1.0 + float(s.alpha))
    return DEFAULT_TEMPERATURE


def check_decode_settings(s: DecodeConfig, vocab: int | None = None, prefix: str = "") -> str:
    """Validate the settings of `s` that need no model, and ``topk`` against `vocab` if given.

    `prefix` (``"decode."`` from the config) is put before each key in the messages.
    Returns the engine method name. Raises `DecodeInputError` with a one-line reason.
    """
    try:
        method = resolve_method(s.method)
    except DecodeInputError as exc:
        if not prefix:
            raise
        raise type(exc)(
            f"{prefix}method={s.method!r} is not a decoding method; choose one of {', '.join(METHODS)}"
        ) from None
    if not _int(s.max_new_tokens) or s.max_new_tokens < 1:
        raise DecodeInputError(
            f"{prefix}max_new_tokens must be a positive integer, got {s.max_new_tokens!r}"
        )
    if not _int(s.batch_size) or s.batch_size < 1:
        raise DecodeInputError(
            f"{prefix}batch_size must be a positive integer, got {s.batch_size!r}"
        )
    if (method in ARGS_METHODS or method in ("top-k", "token-rm", "token-rm-stochastic")) and (
        not _int(s.topk) or s.topk < 1 or (vocab is not None and s.topk > vocab)
    ):
        bound = f"in [1, {vocab}] (the vocabulary size)" if vocab is not None else ">= 1"
        raise DecodeInputError(f"{prefix}topk must be an integer {bound}, got {s.topk!r}")
    for name in ("weight", "alpha", "temperature", "top_p", "gate_threshold"):
        value = getattr(s, name)  # a string ("1.5") would fail only in the first batch
        if not (value is None and name == "temperature") and not _number(value):
            raise DecodeInputError(f"{prefix}{name} must be a number, got {value!r}")
    for f in fields(s):  # every float setting: inf passes the range checks below
        value = getattr(s, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise DecodeInputError(f"{prefix}{f.name} must be a finite number, got {value!r}")
    if method in ("genarm", "genarm-greedy") and s.alpha <= -1:
        raise DecodeInputError(
            f"{prefix}alpha must be > -1 (genarm divides by 1 + alpha), got {s.alpha!r}"
        )
    if (
        method
        in ("args-stochastic", "top-k", "nucleus", "best-of-n", "genarm", "token-rm-stochastic")
        and not sampling_temperature(s) > 0
    ):
        hint = " (greedy methods need no temperature)" if prefix else ""
        raise DecodeInputError(
            f"{prefix}temperature must be > 0 for {method}, got {s.temperature!r}{hint}"
        )
    if method == "args-gated":
        tau = s.gate_threshold
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 <= tau <= 1:
            raise DecodeInputError(
                f"{prefix}gate_threshold must be a number in [0, 1] (1 = always score, 0 = never), got {tau!r}"
            )
    if method in ("nucleus", "best-of-n") and not 0 < float(s.top_p) <= 1:
        raise DecodeInputError(f"{prefix}top_p must be in (0, 1], got {s.top_p!r}")
    if method == "best-of-n" and (not _int(s.num_samples) or s.num_samples < 1):
        raise DecodeInputError(
            f"{prefix}num_samples must be a positive integer, got {s.num_samples!r}"
        )
    cs = s.chunk_size
    if not (cs is None or cs == "auto" or (_int(cs) and cs >= 1)):
        raise DecodeInputError(
            f"{prefix}chunk_size must be a positive integer or 'auto', got {cs!r}"
        )
    return method


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
