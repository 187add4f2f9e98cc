"""Schema of decoding settings (the ``decode`` config group). Plain, OmegaConf-compatible.

`DecodeConfig` holds the settings every method shares (length, batch size, seed ...) and the
knobs of the built-in methods; each method reads only the knobs its `Method` declares
(`argsfw.decoding.registry`; ``python -m argsfw.methods`` lists them). A method declared outside
argsfw reads its own knobs from ``decode.options``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from argsfw.decoding.types import DecodeInputError

# `DecodeConfig.scorer` values; see argsfw.decoding.probe
SCORER_CHOICES = ("auto", "tree", "expanded", "full")
DEFAULT_TEMPERATURE = 0.7  # the sampling methods' temperature when a method gives none
# w, the reward weight: one default for the config, the decode groups and ARGS.generate (the
# paper's setting)
DEFAULT_WEIGHT = 1.5


@dataclass
class DecodeConfig:
    """How to decode: method, reward weight w, candidates k, length, sampling knobs."""

    method: str = "args-greedy"  # a registered name (either - or _) or pkg.module:METHOD
    weight: float = DEFAULT_WEIGHT  # w in logit(v) + w * r([x, v]) (the reward-weighted methods)
    alpha: float = 1.0  # genarm: next-token logits (log pi_base + alpha * log pi_r) / (1 + alpha)
    topk: int = 10  # k candidates scored by the RM per step (also k of top-k sampling)
    max_new_tokens: int = 128
    # sampling temperature of args-stochastic / token-rm-stochastic / top-k / nucleus / best-of-n /
    # genarm (applied after genarm's 1/(1+alpha)). None: 0.7, but for genarm GenARM's rule
    # 1/(1+alpha), which samples the paper's pi_decode = pi_base*pi_r^alpha (`sampling_temperature`)
    temperature: float | None = None
    top_p: float = 0.9  # nucleus
    num_samples: int = 4  # best-of-n: N (cd-blockwise: K continuations per block)
    block_size: int = (
        4  # cd-blockwise: M, tokens per block (1: tokenwise; max_new_tokens: best-of-K)
    )
    reward_temperature: float = (
        1.0  # soft-best-of-n: lambda, pick sample j w.p. ∝ exp(r_j / lambda)
    )
    rejection_every: int = 8  # speculative-best-of-n: new tokens between rejection points
    rejection_rate: float = 0.5  # speculative-best-of-n: fraction of live samples dropped at each
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
    # the knobs of a method declared outside argsfw (its Method.options dataclass)
    options: dict[str, Any] = field(default_factory=dict)


# Each method knob's valid range and one-line doc (the listing, python -m argsfw.methods, shows
# the knobs a method reads with these and their defaults above)
KNOBS: dict[str, tuple[str, str]] = {
    "weight": ("any finite number", "w in logit(v) + w * r([x, v]); 0 reads no guide"),
    "alpha": (
        "> -1",
        "GenARM: logits (log pi_base + alpha * log pi_r) / (1 + alpha); 0 reads no guide",
    ),
    "topk": ("integer in [1, vocabulary]", "k candidates per step (the policy's top k by logit)"),
    "temperature": (
        "> 0, or null",
        "sampling temperature; null: the method's default (0.7; GenARM 1/(1+alpha))",
    ),
    "top_p": ("(0, 1]", "nucleus mass kept before sampling"),
    "num_samples": ("integer >= 1", "N samples per prompt"),
    "block_size": (
        "integer >= 1",
        "M: tokens per block; K continuations of M tokens compete per block",
    ),
    "reward_temperature": (
        "> 0",
        "lambda: sample j is picked w.p. ∝ exp(r_j / lambda) (0+: best-of-N)",
    ),
    "rejection_every": ("integer >= 1", "new tokens between rejection points"),
    "rejection_rate": (
        "[0, 1)",
        "fraction of a prompt's live samples dropped at each point (lowest RM reward)",
    ),
    "chunk_size": (
        "integer >= 1, auto or null",
        "candidates per RM forward (auto: what fits in memory)",
    ),
    "gate_threshold": ("[0, 1]", "score a step only where the policy's top-1 probability <= tau"),
}


def sampling_temperature(s: DecodeConfig) -> float:
    """The temperature `s` samples at: ``s.temperature``, else the method's own default (GenARM:
    ``1 / (1 + alpha)``), else `DEFAULT_TEMPERATURE`."""
    if s.temperature is not None:
        return float(s.temperature)
    from argsfw.decoding.registry import get_method

    try:
        method = get_method(s.method)
    except DecodeInputError:
        return DEFAULT_TEMPERATURE
    own = method.default_temperature(s) if method.default_temperature else None
    return DEFAULT_TEMPERATURE if own is None else float(own)


def check_decode_settings(s: DecodeConfig, vocab: int | None = None, prefix: str = ""):
    """Validate the settings of `s` that need no model, and ``topk`` against `vocab` if given.

    Only the knobs the method reads are range-checked. `prefix` (``"decode."`` from the config)
    is put before each key in the messages. Returns the method (`argsfw.decoding.registry.Method`).
    Raises `DecodeInputError` with a one-line reason.
    """
    from argsfw.decoding.registry import get_method

    try:
        method = get_method(s.method)
    except DecodeInputError as exc:
        if not prefix:
            raise
        if ":" in str(s.method):  # one's own method: the import error says what to fix
            raise type(exc)(f"{prefix}method: {exc}") from None
        from argsfw.decoding.registry import methods

        valid = ", ".join(n for n in methods() if ":" not in n)
        raise type(exc)(
            f"{prefix}method={s.method!r} is not a decoding method; choose one of {valid} "
            "(or pkg.module:METHOD)"
        ) from None
    if not _int(s.max_new_tokens) or s.max_new_tokens < 1:
        raise DecodeInputError(
            f"{prefix}max_new_tokens must be a positive integer, got {s.max_new_tokens!r}"
        )
    if not _int(s.batch_size) or s.batch_size < 1:
        raise DecodeInputError(
            f"{prefix}batch_size must be a positive integer, got {s.batch_size!r}"
        )
    for f in fields(s):  # every float setting: inf passes the range checks below
        value = getattr(s, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise DecodeInputError(f"{prefix}{f.name} must be a finite number, got {value!r}")
    knobs = set(method.knobs)
    if "topk" in knobs and (
        not _int(s.topk) or s.topk < 1 or (vocab is not None and s.topk > vocab)
    ):
        bound = f"in [1, {vocab}] (the vocabulary size)" if vocab is not None else ">= 1"
        raise DecodeInputError(f"{prefix}topk must be an integer {bound}, got {s.topk!r}")
    for name in ("weight", "alpha", "temperature", "top_p", "gate_threshold"):
        value = getattr(s, name)  # a string ("1.5") would fail only in the first batch
        if name in knobs and not (value is None and name == "temperature") and not _number(value):
            raise DecodeInputError(f"{prefix}{name} must be a number, got {value!r}")
    try:
        method.check(s)
    except DecodeInputError as exc:
        raise DecodeInputError(str(exc).replace("decode.", prefix, 1)) from None
    if method.samples and not sampling_temperature(s) > 0:
        hint = " (greedy methods need no temperature)" if prefix else ""
        raise DecodeInputError(
            f"{prefix}temperature must be > 0 for {method.name}, got {s.temperature!r}{hint}"
        )
    if "top_p" in knobs and not 0 < float(s.top_p) <= 1:
        raise DecodeInputError(f"{prefix}top_p must be in (0, 1], got {s.top_p!r}")
    cs = s.chunk_size
    if "chunk_size" in knobs and not (cs is None or cs == "auto" or (_int(cs) and cs >= 1)):
        raise DecodeInputError(
            f"{prefix}chunk_size must be a positive integer or 'auto', got {cs!r}"
        )
    method.option_values(s)
    return method


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
