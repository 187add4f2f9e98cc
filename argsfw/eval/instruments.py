"""Checks of the measuring instruments themselves, beside the results they measure.

* `rm_pair_accuracy` (``eval.metrics: [..., instruments]``): each reward model of the evaluation
  (the guide ``reward_model=`` and the judge ``eval.judge_reward_model``) ranks the held-out
  preference pairs of the job's ``data`` section (its ``eval_split``), read exactly as the
  outputs are read (the same prompt cut, the RM's own Hugging Face forward), beside the
  length-by-domain rule on the same pairs (`argsfw.rlhf.length_rule`). A reward gain measured by
  an RM that does not beat that rule could be length, not preference.
* `length_adjusted_gains` (``eval.length_baseline: <label>``): each row's gain over a baseline
  row in judge reward (else guide reward), plain and at equal answer length: on the prompts both
  rows answered, the per-prompt difference is regressed on the difference in answer length, and
  the intercept is the gain of an answer exactly as long as the baseline's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from argsfw.eval.inputs import cut_at_turn
from argsfw.rlhf.length_rule import length_rule_correct, paired_comparison


def _cut_prompt(prompt: str, tokenizer, max_prompt_tokens: int | None) -> str:
    if max_prompt_tokens is None:
        return prompt
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[-max_prompt_tokens:]) if len(ids) > max_prompt_tokens else prompt


def rm_pair_accuracy(
    data_cfg, split: str, specs: dict[str, str], cfg, cache_dir=None
) -> list[dict[str, Any]]:
    """Per reward model: accuracy on the pairs of `split` of `data_cfg` beside the length rule
    (with `cache_dir`, scores an earlier evaluation there computed are reused).

    Returns one dict per model: ``name``, ``model``, `paired_comparison`'s fields, ``skipped``
    (pairs with a side too long to score) and ``by_domain`` (accuracy and rule per domain).

    Raises:
        argsfw.data.DataError: the pairs cannot be read (missing file, empty split).
    """
    from argsfw.data import load_pairs
    from argsfw.data.types import DataError
    from argsfw.eval.reward import load_reward, score_texts
    from argsfw.eval.score_cache import ScoreCache

    out = []
    for name, spec in specs.items():
        model, tok = load_reward(spec, None, dtype=cfg.reward_dtype, device=cfg.device)
        cache = ScoreCache.for_model(cache_dir, model, cfg.reward_dtype)
        pairs = load_pairs(data_cfg, split, tok)
        if not pairs:
            raise DataError(f"data split {split!r} has no pairs to check the reward models on")
        prompts = [_cut_prompt(p.prompt, tok, cfg.max_prompt_tokens) for p in pairs]
        scores = [
            score_texts(
                [q + getattr(p, side) for q, p in zip(prompts, pairs)],
                model,
                tok,
                cfg.reward_batch_size,
                cfg.max_reward_tokens,
                cache,
            ).scores
            for side in ("chosen", "rejected")
        ]
        keep = [i for i in range(len(pairs)) if None not in (scores[0][i], scores[1][i])]
        kept = [pairs[i] for i in keep]
        right = [float(scores[0][i] > scores[1][i]) for i in keep]
        rule = length_rule_correct(
            [len(p.chosen) for p in kept], [len(p.rejected) for p in kept], [p.domain for p in kept]
        )
        by_domain = {}
        for domain in sorted({p.domain for p in kept}):
            idx = [k for k, p in enumerate(kept) if p.domain == domain]
            by_domain[domain or "all"] = {
                "n": len(idx),
                "acc": sum(right[k] for k in idx) / len(idx),
                "rule_acc": sum(rule[k] for k in idx) / len(idx),
            }
        out.append(
            {
                "name": name,
                "model": str(spec),
                **paired_comparison(right, rule),
                "skipped": len(pairs) - len(keep),
                "by_domain": by_domain,
            }
        )
    return out


def _ols_intercept(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """``(intercept, its standard error, slope)`` of the least-squares line y = a + b·x.

    Why hand-written: three sums; numpy's lstsq gives no standard errors and statsmodels is
    not a dependency.
    """
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((v - mx) ** 2 for v in x)
    if n < 3 or sxx == 0:  # no spread in length: the plain mean difference
        se = math.sqrt(sum((v - my) ** 2 for v in y) / max(1, n - 1) / n)
        return my, se, 0.0
    b = sum((u - mx) * (v - my) for u, v in zip(x, y)) / sxx
    a = my - b * mx
    s2 = sum((v - a - b * u) ** 2 for u, v in zip(x, y)) / (n - 2)
    return a, math.sqrt(s2 * (1 / n + mx**2 / sxx)), b


def length_adjusted_gains(inputs, per: dict[str, dict], baseline: str) -> dict[str, dict]:
    """Per row label: its gain over row `baseline` in judge reward (guide reward without a
    judge), plain and at equal answer length (see the module docstring).

    Returns ``{label: {"length", "gain_of", "gain", "gain_se", "gain_equal_length",
    "gain_equal_length_se", "length_slope", "gain_n"}}``; ``length`` is every row's mean answer length
    in characters (the answer cut at the next turn, as the metrics read it).

    Raises:
        ValueError: `baseline` is not one of the rows.
    """
    labels = [inp.label for inp in inputs]
    if baseline not in labels:
        raise ValueError(f"eval.length_baseline={baseline!r} is not a row; rows: {labels}")
    key = "_judge" if "_judge" in per[baseline] else "_scores"
    which = "judge_reward" if key == "_judge" else "reward"

    def by_id(inp) -> dict[str, tuple[float | None, int]]:
        scores = per[inp.label].get(key) or [None] * len(inp.records)
        return {r.id: (s, len(cut_at_turn(r.continuation))) for r, s in zip(inp.records, scores)}

    base = by_id(inputs[labels.index(baseline)])
    out = {}
    for inp in inputs:
        rows = by_id(inp)
        lengths = [n for _, n in rows.values()]
        entry: dict[str, Any] = {"length": sum(lengths) / max(1, len(lengths)), "gain_of": which}
        common = [
            i for i in rows if i in base and rows[i][0] is not None and base[i][0] is not None
        ]
        if inp.label != baseline and len(common) >= 2:
            diff = [rows[i][0] - base[i][0] for i in common]
            dlen = [float(rows[i][1] - base[i][1]) for i in common]
            mean = sum(diff) / len(diff)
            se = math.sqrt(sum((d - mean) ** 2 for d in diff) / (len(diff) - 1) / len(diff))
            a, a_se, slope = _ols_intercept(dlen, diff)
            entry.update(
                gain=mean,
                gain_se=se,
                gain_equal_length=a,
                gain_equal_length_se=a_se,
                length_slope=slope,
                gain_n=len(common),
            )
        out[inp.label] = entry
    return out
