"""TreeBoN (Qiu et al., 2024, "TreeBoN: Enhancing Inference-Time Alignment with Speculative
Tree-Search and Best-of-N Sampling", arXiv 2410.16033; no official code): best-of-N grown as a tree.

N roots are sampled from the prompt (nucleus at temperature T, the streams of best-of-N's N
samples), each grown by a segment of ``segment_length`` tokens. At each layer's end every
candidate of a prompt is ranked, the best ``keep_fraction`` of them (at least one) survive, and
each surviving partial answer branches into ``children`` continuations of the next segment;
the others are dropped. When the answers are full, the best leaf is the answer.

Two methods share this file, one per ranking signal:

* ``treebon`` (``reward_model=<a DPO run>``): TreeBoN's weighted implicit reward of the newest
  segment, ``sum_i (1/i) * beta * (log pi_dpo - log pi_ref)(y_i)`` over its tokens i = 1..m
  (`argsfw.decoding.implicit`: both models read every token once, in lock-step with the policy);
  the final leaf is the one with the highest implicit reward of the whole answer,
  ``beta * sum_t (log pi_dpo - log pi_ref)(y_t)`` (the paper picks it with its RM; argsfw reads
  one guide per method);
* ``treebon-rm``: the sequence RM's reward of prompt + partial answer ranks (and picks the
  leaf), each read whole at a layer's end, as speculative best-of-N reads its partial answers.

A candidate that ends (EOS) is ranked with its layer; if it survives it joins the final leaves
without branching. With ``segment_length >= max_new_tokens`` there is one layer: treebon-rm is
best-of-N exactly. Caches: the prompt is read once and expanded to the N roots; a survivor's
last token is read once and its cache rows are then copied to its children (no re-read);
dropped candidates cost nothing more. ``llm_tokens`` / ``rm_tokens`` count every position
each model read (the implicit reward's two models: two per position).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from argsfw.decoding.registry import Method, Parts, register

CHILD_STREAM = 1_000_000  # layer l's children draw from seeded streams l * CHILD_STREAM + c


@dataclass
class TreeBoNOptions:
    """TreeBoN's own knobs (``decode.options.*``); N is ``decode.num_samples``."""

    segment_length: int = field(
        default=32, metadata={"range": "integer >= 1", "doc": "tokens per layer"}
    )
    children: int = field(default=4, metadata={"range": "integer >= 1", "doc": "continuations each survivor branches into"})  # fmt: skip
    keep_fraction: float = field(
        default=0.25, metadata={"range": "(0, 1], <= 1 / children", "doc": "share of a prompt's candidates that survive a layer"}
    )  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("segment_length", "children"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r} must be an integer >= 1")
        f = self.keep_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ValueError(f"keep_fraction={f!r} must be in (0, 1]")
        if f * self.children > 1 + 1e-9:
            raise ValueError(
                f"keep_fraction={f!r} with children={self.children} would grow the tree past N "
                f"per layer; use keep_fraction <= 1/children ({1 / self.children:g})"
            )


@dataclass(eq=False)
class _Node:
    """One partial answer of prompt ``prompt`` (index ``order`` among its layer's candidates)."""

    prompt: int
    order: int
    gen: torch.Generator
    tokens: list[int] = field(default_factory=list)
    done: bool = False
    score: float = 0.0  # this layer's ranking value
    total: float = 0.0  # implicit reward of the whole answer so far
    value: float = -math.inf  # what picks the final leaf


def _keep(states, logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """Keep batch ``rows`` (repeats allowed: copies) in every cached state; returns the kept logits."""
    idx = torch.tensor(rows, dtype=torch.long)
    for st in states:
        st.keep(idx)
    return logits[idx.to(logits.device)]


@torch.inference_mode()
def _run(p: Parts):
    from argsfw.decoding.baselines import NucleusSampler
    from argsfw.decoding.methods.best_of_n import score_whole
    from argsfw.decoding.registry import get_method
    from argsfw.decoding.sampling import make_generator
    from argsfw.decoding.search import RowResult, StepContext

    s = p.s
    method = get_method(s.method)
    o, n, m_max, eos = method.option_values(s), s.num_samples, s.max_new_tokens, set(p.eos)
    implicit = method.needs == "implicit"
    policy, out = p.policy, [RowResult(llm_tokens=len(q)) for q in p.prompts]
    logits = policy.prefill()
    states: list = [policy]
    guide = None
    if implicit:
        from argsfw.decoding.implicit import ImplicitRewardState

        guide = ImplicitRewardState(p.decoder.rm, p.stats, logits.device)
        guide.start(policy.ids, policy.mask)
        states.append(guide)
        for res, q in zip(out, p.prompts):
            res.rm_tokens = 2 * len(q)
    sampler = NucleusSampler(s.top_p, s.temperature)
    nodes = [
        _Node(i, j, make_generator(s.seed, p.keys[r], sample=j))
        for i, r in enumerate(p.rows)
        for j in range(n)
    ]
    logits = _keep(states, logits, [i for i in range(len(p.rows)) for _ in range(n)])
    leaves: list[list[_Node]] = [[] for _ in p.rows]
    layer = 0
    while nodes:
        length = len(nodes[0].tokens)
        seg = min(o.segment_length, m_max - length)
        live = list(range(len(nodes)))  # batch row -> node
        for t in range(seg):
            ctx = StepContext(
                t + 1, [p.rows[nodes[k].prompt] for k in live], [nodes[k].gen for k in live]
            )
            tokens, _ = sampler(logits, None, ctx)
            gains = guide.score(tokens[:, None])[:, 0].tolist() if guide is not None else None
            for b, (k, tok) in enumerate(zip(live, tokens.tolist())):
                node = nodes[k]
                node.tokens.append(tok)
                node.done = tok in eos
                if gains is not None:
                    node.score += gains[b] / (t + 1)
                    node.total += gains[b]
            p.stats.new_tokens += len(live)
            p.meter.sample()
            go = [b for b, k in enumerate(live) if not nodes[k].done]
            if t == seg - 1 or not go:
                break
            if len(go) < len(live):
                logits, tokens = _keep(states, logits, go), tokens[go]
                live = [live[b] for b in go]
            logits = policy.step(tokens)
            if guide is not None:
                guide.commit(tokens)
            for k in live:
                out[nodes[k].prompt].llm_tokens += 1
                out[nodes[k].prompt].rm_tokens += 2 if implicit else 0
        if not implicit:  # the RM reads every candidate whole: prompt + partial answer
            rewards, cost = score_whole(p, [p.prompts[x.prompt] + x.tokens for x in nodes])
            for x, r, c in zip(nodes, rewards.tolist(), cost):
                x.score = x.value = r
                out[x.prompt].rm_tokens += c
        else:
            for x in nodes:
                x.value = x.total
        last = length + seg >= m_max
        survivors: list[_Node] = []
        for i in range(len(p.rows)):
            mine = [x for x in nodes if x.prompt == i]
            if last:
                leaves[i] += mine
                continue
            keep = max(1, math.floor(o.keep_fraction * len(mine) + 1e-9))
            best = sorted(
                sorted(mine, key=lambda x: (-x.score, x.order))[:keep], key=lambda x: x.order
            )
            leaves[i] += [x for x in best if x.done]
            survivors += [x for x in best if not x.done]
        if last or not survivors:
            break
        rows = [live.index(nodes.index(x)) for x in survivors]  # survivors are all still live
        logits = _keep(states, logits, rows)
        pending = torch.tensor([x.tokens[-1] for x in survivors], device=logits.device)
        logits = policy.step(pending)  # the survivor's last token, read once for all its children
        if guide is not None:
            guide.commit(pending)
        for x in survivors:
            out[x.prompt].llm_tokens += 1
            out[x.prompt].rm_tokens += 2 if implicit else 0
        logits = _keep(
            states, logits, [b for b in range(len(survivors)) for _ in range(o.children)]
        )
        layer += 1
        nodes, count = [], [0] * len(p.rows)
        for x in survivors:
            for _ in range(o.children):
                c = count[x.prompt]
                count[x.prompt] += 1
                key = p.keys[p.rows[x.prompt]]
                gen = make_generator(s.seed, key, sample=layer * CHILD_STREAM + c)
                nodes.append(_Node(x.prompt, c, gen, list(x.tokens), total=x.total))
    for i, mine in enumerate(leaves):
        best = max(mine, key=lambda x: (x.value, -mine.index(x)))
        out[i].new_ids, out[i].finished, out[i].reward = best.tokens, best.done, best.value
    return out


def _label(name: str):
    def label(s) -> str:
        from argsfw.decoding.registry import get_method

        o = get_method(name).option_values(s)
        return f"{name} N={s.num_samples} seg={o.segment_length} c={o.children}"

    return label


_COMMON = dict(
    knobs=("num_samples", "top_p", "temperature"),
    run=_run,
    samples=True,
    options=TreeBoNOptions,
    curve="num_samples",
)
TREEBON = register(
    Method(
        name="treebon",
        summary="TreeBoN: best-of-N grown as a tree of segments, pruned by DPO's weighted implicit reward (reward_model=<DPO run>)",
        needs="implicit",
        label=_label("treebon"),
        color="#1b9e77",
        marker="X",
        **_COMMON,
    )
)
TREEBON_RM = register(
    Method(
        name="treebon-rm",
        summary="TreeBoN pruned and picked by the sequence RM's reward of each partial answer",
        needs="sequence",
        label=_label("treebon-rm"),
        color="#66c2a5",
        marker="X",
        **_COMMON,
    )
)
