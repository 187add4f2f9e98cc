"""ARGS (Khanov et al., 2024): the policy's top-k tokens, scored ``logit(v) + w * r([x, v])`` by a
sequence RM; greedy appends the best, stochastic samples ``softmax(score / T)`` over the k,
greedy-large scores the k candidates ``chunk_size`` at a time (same choice, less memory)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from argsfw.decoding.config import VOCAB, knob
from argsfw.decoding.methods.baselines import Sampling
from argsfw.decoding.registry import Method, Parts

# w, the reward weight: one default for the ARGS-family knobs and ARGS.generate (the paper's)
DEFAULT_WEIGHT = 1.5


@dataclass
class Args:
    """ARGS's knobs (also token-rm's and args-gated's)."""

    weight: float = knob(DEFAULT_WEIGHT, "w in logit(v) + w * r([x, v]); 0 reads no guide")
    topk: int = knob(10, "k candidates per step (the policy's top k by logit)", ge=1, le=VOCAB)


@dataclass
class ArgsSampled(Sampling, Args):
    """ARGS-stochastic: ARGS's knobs and a temperature."""


@dataclass
class ArgsChunked(Args):
    """ARGS-greedy-large: ARGS's knobs and how many candidates per RM forward."""

    chunk_size: Any = knob(
        None, "candidates per RM forward (auto or null: what fits in memory)", ge=1, integer=True,
        also=("auto", None),
    )  # fmt: skip


_LABEL = (("weight", "w"), ("topk", "k"))


def _chooser(greedy: bool, chunked: bool = False):
    def build(p: Parts):
        from argsfw.api import sequence_scorer
        from argsfw.decoding.engine import auto_chunk_size
        from argsfw.decoding.search import ArgsChooser, log

        s, d = p.s, p.decoder
        scorer = sequence_scorer(p) if s.weight != 0 else None
        chunk = None
        if chunked:
            chunk = s.chunk_size
            if chunk is None or chunk == "auto":
                longest = max(map(len, p.prompts)) + s.max_new_tokens
                chunk = auto_chunk_size(d.rm, len(p.prompts), longest, s.topk)
        describe = None
        if s.debug:
            describe = lambda toks: [d.tokenizer.decode([t]) for t in toks]  # noqa: E731
            if not log.isEnabledFor(10):
                log.warning(
                    "debug=True but logger 'argsfw.decoding' is not at DEBUG level: call "
                    "logging.basicConfig(level=logging.DEBUG)"
                )
        return scorer, ArgsChooser(
            s.weight, s.topk, greedy, 1.0 if greedy else s.temperature, chunk, describe
        )

    return build


ARGS_GREEDY = Method(
    name="args-greedy",
    summary="ARGS-greedy: argmax over the top k of logit(v) + w * RM([x, v])",
    settings=Args,
    needs="sequence",
    guide_knob="weight",
    build=_chooser(greedy=True),
    label_knobs=_LABEL,
    color="#d62728",
    marker="D",
    curve="weight",
    original_names=("greedy",),
    counts_scored_steps=True,
)
ARGS_STOCHASTIC = Method(
    name="args-stochastic",
    summary="ARGS-stochastic: sample softmax((logit(v) + w * RM([x, v])) / T) over the top k",
    settings=ArgsSampled,
    needs="sequence",
    guide_knob="weight",
    build=_chooser(greedy=False),
    samples=True,
    label_knobs=_LABEL,
    color="#9467bd",
    marker="X",
    curve="weight",
    original_names=("topk",),
    counts_scored_steps=True,
)
ARGS_GREEDY_LARGE = Method(
    name="args-greedy-large",
    summary="ARGS-greedy scoring the k candidates chunk_size at a time (less memory, same choice)",
    settings=ArgsChunked,
    needs="sequence",
    guide_knob="weight",
    build=_chooser(greedy=True, chunked=True),
    label_knobs=_LABEL,
    color="#e377c2",
    marker="d",
    curve="weight",
    # the original code's spelling is greedy_large, its README's greedy-large
    original_names=("greedy-large", "greedy_large"),
    counts_scored_steps=True,
)
