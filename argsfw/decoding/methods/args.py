"""ARGS (Khanov et al., 2024): the policy's top-k tokens, scored ``logit(v) + w * r([x, v])`` by a
sequence RM; greedy appends the best, stochastic samples ``softmax(score / T)`` over the k,
greedy-large scores the k candidates ``chunk_size`` at a time (same choice, less memory)."""

from __future__ import annotations

from argsfw.decoding.registry import Method, Parts, register

_KNOBS = ("weight", "topk")
_LABEL = (("weight", "w"), ("topk", "k"))


def _chooser(greedy: bool, chunked: bool = False):
    def build(p: Parts):
        from argsfw.decoding.engine import auto_chunk_size
        from argsfw.decoding.probe import build_scorer
        from argsfw.decoding.search import ArgsChooser, log

        s, d = p.s, p.decoder
        scorer = None
        if s.weight != 0:
            p.stats.scorer = d.scorer_name(s)
            reads = p.meter.cursors("rm", p.rows)
            scorer = build_scorer(p.stats.scorer, d.scorer_spec, p.stats, reads)
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
        return scorer, ArgsChooser(s.weight, s.topk, greedy, s.temperature, chunk, describe)

    return build


ARGS_GREEDY = register(
    Method(
        name="args-greedy",
        summary="ARGS-greedy: argmax over the top k of logit(v) + w * RM([x, v])",
        knobs=_KNOBS,
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
)
ARGS_STOCHASTIC = register(
    Method(
        name="args-stochastic",
        summary="ARGS-stochastic: sample softmax((logit(v) + w * RM([x, v])) / T) over the top k",
        knobs=(*_KNOBS, "temperature"),
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
)
ARGS_GREEDY_LARGE = register(
    Method(
        name="args-greedy-large",
        summary="ARGS-greedy scoring the k candidates chunk_size at a time (less memory, same choice)",
        knobs=(*_KNOBS, "chunk_size"),
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
)
