"""Small statistics shared by the metrics, the cost summary and the optional oracle score."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from argsfw.eval.inputs import EvalRecord, cut_at_turn

log = logging.getLogger(__name__)


def mean_stderr(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (sample std, ddof=1, over sqrt(n)).

    Returns ``(None, None)`` for no values and ``(mean, None)`` for a single value.
    """
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def wilson_interval(
    successes: int, n: int, z: float = 1.959963984540054
) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion (95% by default).

    Chosen over the normal approximation because it stays inside [0, 1] and behaves at
    small n and rates near 0 or 1 (judge runs are often ~100 prompts). None when n == 0.
    """
    # why hand-written: two lines of arithmetic; scipy/statsmodels are not dependencies here
    if n == 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def si(value: float) -> str:
    """``value`` with an SI prefix and 3 significant digits (``1.23M``, ``45.6G``, ``7``)."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}"
    return f"{value:.3g}"


def _total(records: Sequence[EvalRecord], get: Callable[[EvalRecord], Any]) -> float | None:
    """Sum of a numeric field over records; None when any record lacks it."""
    values = [get(r) for r in records]
    if not values or any(not isinstance(v, (int, float)) for v in values):
        return None
    return float(sum(values))


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def cost_metrics(records: Sequence[EvalRecord]) -> dict[str, float | None]:
    """Speed and accounting from the records' own fields.

    Returns ``tokens_per_second`` (all new tokens / all seconds), ``seconds_per_prompt``,
    ``llm_forwards_per_token`` and ``rm_forwards_per_token`` (from ``stats.llm_forwards`` /
    ``stats.rm_forwards`` over ``n_new_tokens``), ``peak_memory_bytes`` (max over records) and
    ``new_tokens_per_prompt``. Per generated token: ``llm_tokens_per_token`` and
    ``rm_tokens_per_token`` (token positions each model computed for the record, prompt
    included, padding excluded: ``stats.llm_tokens`` / ``stats.rm_tokens``), their sum
    ``compute_tokens_per_token``, the forward FLOPs of each model and their sum
    ``llm_flops_per_token`` / ``rm_flops_per_token`` / ``flops_per_token`` (the plots' default
    cost axis), ``seconds_per_token``, ``rm_scored_fraction`` (steps the RM scored / generated
    tokens; reward-guided methods), and ``llm_reread_fraction`` / ``rm_reread_fraction``: of
    the positions each model computed, those an earlier forward of the same prompt's search
    had already computed (None for a model that computed none).
    A value is None when some record lacks the field it needs.
    """
    tokens = _total(records, lambda r: r.n_new_tokens)
    seconds = _total(records, lambda r: r.seconds)
    peaks = [r.stats.get("peak_memory_bytes") for r in records]
    peaks_ok = [p for p in peaks if isinstance(p, (int, float))]
    llm = _total(records, lambda r: r.stats.get("llm_tokens"))
    rm = _total(records, lambda r: r.stats.get("rm_tokens"))
    scored = _total(records, lambda r: r.stats.get("rm_scored_steps"))
    llm_f = _total(records, lambda r: r.stats.get("llm_flops"))
    rm_f = _total(records, lambda r: r.stats.get("rm_flops"))
    return {
        "llm_tokens_per_token": _ratio(llm, tokens),
        "rm_tokens_per_token": _ratio(rm, tokens),
        "compute_tokens_per_token": _ratio(llm + rm, tokens) if None not in (llm, rm) else None,
        "llm_flops_per_token": _ratio(llm_f, tokens),
        "rm_flops_per_token": _ratio(rm_f, tokens),
        "flops_per_token": _ratio(llm_f + rm_f, tokens) if None not in (llm_f, rm_f) else None,
        "llm_reread_fraction": _ratio(_total(records, lambda r: r.stats.get("llm_reread")), llm),
        "rm_reread_fraction": _ratio(_total(records, lambda r: r.stats.get("rm_reread")), rm),
        "seconds_per_token": _ratio(seconds, tokens),
        "rm_scored_fraction": _ratio(scored, tokens),
        "tokens_per_second": _ratio(tokens, seconds),
        "seconds_per_prompt": _ratio(seconds, len(records)),
        "new_tokens_per_prompt": _ratio(tokens, len(records)),
        "llm_forwards_per_token": _ratio(
            _total(records, lambda r: r.stats.get("llm_forwards")), tokens
        ),
        "rm_forwards_per_token": _ratio(
            _total(records, lambda r: r.stats.get("rm_forwards")), tokens
        ),
        "peak_memory_bytes": float(max(peaks_ok)) if peaks_ok else None,
    }


def record_cost(r: EvalRecord) -> dict[str, float | None]:
    """One record's cost per generated token (the fields of `cost_metrics`, for records.jsonl)."""
    n = r.n_new_tokens if isinstance(r.n_new_tokens, int) and r.n_new_tokens > 0 else None

    def num(key: str) -> float | None:
        v = r.stats.get(key)
        return float(v) if isinstance(v, (int, float)) else None

    llm, rm, llm_f, rm_f = (num(k) for k in ("llm_tokens", "rm_tokens", "llm_flops", "rm_flops"))
    both = llm + rm if None not in (llm, rm) else None
    flops = llm_f + rm_f if None not in (llm_f, rm_f) else None
    return {
        "n_new_tokens": r.n_new_tokens,
        "llm_tokens_per_token": _ratio(llm, n),
        "rm_tokens_per_token": _ratio(rm, n),
        "compute_tokens_per_token": _ratio(both, n),
        "flops_per_token": _ratio(flops, n),
        "llm_reread": num("llm_reread"),
        "rm_reread": num("rm_reread"),
        "seconds_per_token": _ratio(r.seconds, n),
        "rm_scored_steps": r.stats.get("rm_scored_steps"),
    }


def oracle_metrics(
    records: Sequence[EvalRecord], oracle: Callable[[str, str], float]
) -> dict[str, float | None]:
    """Mean and standard error of an independent ``oracle(prompt, continuation)`` score.

    The continuation is cut at the next turn first, like diversity and coherence. Records
    the oracle rejects with `ValueError` (e.g. a prompt outside the tiny corpus) are skipped
    and counted in ``oracle_skipped``; other exceptions propagate.
    """
    scores: list[float] = []
    skipped, first_error = 0, None
    for r in records:
        try:
            scores.append(float(oracle(r.prompt, cut_at_turn(r.continuation))))
        except ValueError as e:
            skipped += 1
            first_error = first_error or str(e)
    if skipped:
        log.warning(
            "oracle: skipped %d of %d records (first: %s)", skipped, len(records), first_error
        )
    mean, se = mean_stderr(scores)
    return {"oracle": mean, "oracle_se": se, "oracle_skipped": skipped}
