"""The length baseline that every reward-model accuracy argsfw reports stands beside.

Preference data carries a cheap signal that is not preference: in HH-RLHF's helpful-base test
split the longer reply is preferred in 61.5% of pairs, in harmless-base the shorter in 55.5%.
The *length-by-domain rule* picks, in each domain, the longer reply or the shorter one, whichever
wins more often on the pairs it is scored on (so it is the best rule of that form there: an upper
bound for any reward model that only counts characters). A reward model that measures preference
must beat it on the same pairs, by a margin judged with the paired standard error below.

Lengths are in characters of the reply text; a tie in length counts as half right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def length_directions(
    chosen_len: Sequence[int], rejected_len: Sequence[int], domains: Sequence[str]
) -> dict[str, int]:
    """``{domain: +1 (longer wins) | -1 (shorter wins)}``, by majority over the given pairs
    (ties in the vote go to +1)."""
    votes: dict[str, int] = {}
    for c, r, d in zip(chosen_len, rejected_len, domains):
        votes[d] = votes.get(d, 0) + (c > r) - (c < r)
    return {d: 1 if v >= 0 else -1 for d, v in votes.items()}


def length_rule_correct(
    chosen_len: Sequence[int],
    rejected_len: Sequence[int],
    domains: Sequence[str],
    directions: dict[str, int] | None = None,
) -> list[float]:
    """Per pair: 1.0 where the rule picks the chosen reply, 0.0 the rejected, 0.5 a length tie.

    `directions` defaults to `length_directions` of these same pairs; a domain missing from
    given directions counts as "longer wins".
    """
    if directions is None:
        directions = length_directions(chosen_len, rejected_len, domains)
    out = []
    for c, r, d in zip(chosen_len, rejected_len, domains):
        sign = directions.get(d, 1) * ((c > r) - (c < r))
        out.append(0.5 if sign == 0 else float(sign > 0))
    return out


def paired_comparison(model_correct: Sequence[float], rule_correct: Sequence[float]) -> dict:
    """Accuracy of a model and of the rule on the same N pairs, with standard errors.

    Returns ``{"n", "acc", "acc_se", "rule_acc", "rule_se", "diff", "diff_se", "z"}``: ``diff``
    is acc − rule_acc and ``diff_se`` the standard error of the per-pair difference (paired:
    the pairs both get right or wrong do not add noise), ``z = diff / diff_se``.

    Raises:
        ValueError: the two lists differ in length or are empty.
    """
    n = len(model_correct)
    if n == 0 or n != len(rule_correct):
        raise ValueError(f"need the same non-zero number of pairs, got {n} and {len(rule_correct)}")

    def mean_se(xs: Sequence[float]) -> tuple[float, float]:
        m = sum(xs) / len(xs)
        var = sum((x - m) ** 2 for x in xs) / max(1, len(xs) - 1)
        return m, math.sqrt(var / len(xs))

    acc, acc_se = mean_se(model_correct)
    rule, rule_se = mean_se(rule_correct)
    diff, diff_se = mean_se([a - b for a, b in zip(model_correct, rule_correct)])
    return {
        "n": n,
        "acc": acc,
        "acc_se": acc_se,
        "rule_acc": rule,
        "rule_se": rule_se,
        "diff": diff,
        "diff_se": diff_se,
        "z": diff / diff_se if diff_se > 0 else 0.0,
    }
