"""Decoding without a guide, through the same loop as ARGS (same stopping, seeding and
accounting): greedy, top-k sampling, nucleus sampling."""

from __future__ import annotations

from argsfw.decoding.registry import Method, Parts, register


def _greedy(p: Parts):
    from argsfw.decoding.baselines import greedy_chooser

    return None, greedy_chooser


def _top_k(p: Parts):
    from argsfw.decoding.baselines import TopKSampler

    return None, TopKSampler(p.s.topk, p.s.temperature)


def _nucleus(p: Parts):
    from argsfw.decoding.baselines import NucleusSampler

    return None, NucleusSampler(p.s.top_p, p.s.temperature)


GREEDY = register(
    Method(
        name="greedy",
        summary="the policy's argmax (model.generate greedy)",
        build=_greedy,
        color="#555555",
        marker="o",
        label=lambda s: "greedy",
    )
)
TOP_K = register(
    Method(
        name="top-k",
        summary="sample softmax(logits / T) over the k most likely tokens",
        knobs=("topk", "temperature"),
        build=_top_k,
        samples=True,
        color="#bcbd22",
        marker="v",
        label=lambda s: "top-k",
    )
)
NUCLEUS = register(
    Method(
        name="nucleus",
        summary="nucleus (top-p) sampling at temperature T; top_p=1 is ancestral sampling",
        knobs=("top_p", "temperature"),
        build=_nucleus,
        samples=True,
        color="#17becf",
        marker="^",
        label=lambda s: "nucleus",
    )
)
