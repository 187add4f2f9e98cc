"""Decoding without a guide, through the same loop as ARGS (same stopping, seeding and
accounting): greedy, top-k sampling, nucleus sampling."""

from __future__ import annotations

from dataclasses import dataclass

from argsfw.decoding.config import VOCAB, knob
from argsfw.decoding.registry import Method, Parts


@dataclass
class Sampling:
    """The knob of every sampling method (the others reuse it)."""

    temperature: float | None = knob(
        None, "sampling temperature; null: the method's default (0.7)", gt=0, also=(None,)
    )


@dataclass
class TopK(Sampling):
    """Top-k sampling."""

    topk: int = knob(10, "k: sample among the k most likely tokens", ge=1, le=VOCAB)


@dataclass
class Nucleus(Sampling):
    """Nucleus sampling (the samples of best-of-N and controlled decoding too)."""

    top_p: float = knob(
        0.9, "nucleus mass kept before sampling (1: ancestral sampling)", gt=0, le=1
    )


def _greedy(p: Parts):
    from argsfw.decoding.baselines import greedy_chooser

    return None, greedy_chooser


def _top_k(p: Parts):
    from argsfw.decoding.baselines import TopKSampler

    return None, TopKSampler(p.s.topk, p.s.temperature)


def _nucleus(p: Parts):
    from argsfw.decoding.baselines import NucleusSampler

    return None, NucleusSampler(p.s.top_p, p.s.temperature)


GREEDY = Method(
    name="greedy",
    summary="the policy's argmax (model.generate greedy)",
    build=_greedy,
    color="#555555",
    marker="o",
    label=lambda s: "greedy",
)
TOP_K = Method(
    name="top-k",
    summary="sample softmax(logits / T) over the k most likely tokens",
    settings=TopK,
    build=_top_k,
    samples=True,
    color="#bcbd22",
    marker="v",
    label=lambda s: "top-k",
)
NUCLEUS = Method(
    name="nucleus",
    summary="nucleus (top-p) sampling at temperature T; top_p=1 is ancestral sampling",
    settings=Nucleus,
    build=_nucleus,
    samples=True,
    color="#17becf",
    marker="^",
    label=lambda s: "nucleus",
)
