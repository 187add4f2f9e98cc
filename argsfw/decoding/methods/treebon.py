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
  leaf), read at a layer's end, as speculative best-of-N reads its partial answers.

A candidate that ends (EOS) is ranked with its layer; if it survives it joins the final leaves
without branching. With ``segment_length >= max_new_tokens`` there is one layer: treebon-rm is
best-of-N exactly. Caches, with the shared primitives (`PolicyState`, `RewardReader`, the
implicit guide's states: ``repeat`` / ``keep`` / ``extend``): each model reads the prompt once
and expands it to the N roots; a survivor's last token is read once by the policy and the
implicit guide and its cache rows are then copied to its children; the RM's reader extends each
candidate by its new segment at a layer's end and is copied likewise; dropped candidates cost
nothing more. Every position is told to the batch's ledger (the implicit reward's two models:
two per position).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from argsfw.decoding.config import knob
from argsfw.decoding.methods.best_of_n import BestOfN
from argsfw.decoding.registry import Method, Parts
from argsfw.decoding.types import DecodeInputError, RewardKind

if TYPE_CHECKING:
    import torch

CHILD_STREAM = 1_000_000  # layer l's children draw from seeded streams l * CHILD_STREAM + c


@dataclass
class TreeBoN(BestOfN):
    """TreeBoN's knobs; N (``num_samples``) is the number of roots."""

    num_samples: int = knob(8, "N roots per prompt (and candidates per layer)", ge=1)
    segment_length: int = knob(32, "tokens per layer", ge=1)
    children: int = knob(4, "continuations each survivor branches into", ge=1)
    keep_fraction: float = knob(
        0.25, "share of a prompt's candidates that survive a layer (<= 1 / children)", gt=0, le=1
    )


def _check(s) -> None:
    if s.keep_fraction * s.children > 1 + 1e-9:
        raise DecodeInputError(
            f"decode.keep_fraction={s.keep_fraction!r} with children={s.children} would grow the tree "
            f"past N per layer; use keep_fraction <= 1/children ({1 / s.children:g})"
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
    read: int = 0  # tokens of the answer the RM reader has read


class _Guides:
    """The cached states that follow the tree's rows: the policy and the implicit guide (rows =
    live candidates), or the RM reader (rows = the layer's candidates, read at its end)."""

    def __init__(self, policy, guide, reader):
        self.policy, self.guide, self.reader = policy, guide, reader

    def keep(self, rows: list[int], reader: bool = False) -> None:
        """Keep batch ``rows`` of the policy and the guide (with ``reader``: of the reader)."""
        if reader:
            if self.reader is not None:
                self.reader.keep(rows)
            return
        import torch

        idx = torch.tensor(rows, dtype=torch.long)
        self.policy.keep(idx)
        if self.guide is not None:
            self.guide.keep(idx)

    def repeat(self, n: int) -> None:
        """Each row of every state becomes ``n`` rows sharing its cache."""
        for st in (self.policy, self.guide, self.reader):
            if st is not None and n > 1:
                st.repeat(n)


def _run(p: Parts):
    import torch

    with torch.inference_mode():
        return _search(p)


def _search(p: Parts):
    import torch

    from argsfw.api import token_scorer
    from argsfw.decoding.baselines import NucleusSampler
    from argsfw.decoding.prefix_cache import reward_reader
    from argsfw.decoding.registry import get_method
    from argsfw.decoding.sampling import make_generator
    from argsfw.decoding.search import RowResult, StepContext

    s = p.s
    n, m_max, eos = s.num_samples, s.max_new_tokens, set(p.eos)
    implicit = get_method(s.method).needs is RewardKind.IMPLICIT
    policy, out = p.policy, [RowResult() for _ in p.prompts]
    guide = reader = None
    if implicit:
        guide = token_scorer(p)
        guide.start(policy.ids, policy.mask, p.prompts)
    else:
        reader = reward_reader(p)
        if reader is not None:
            p.stats.scorer = "tree"
            reader.extend(p.prompts)
    logits = policy.prefill()
    states = _Guides(policy, guide, reader)
    sampler = NucleusSampler(s.top_p, s.temperature)
    nodes = [
        _Node(i, j, make_generator(s.seed, p.keys[r], sample=j))
        for i, r in enumerate(p.rows)
        for j in range(n)
    ]
    states.repeat(n)
    logits = logits.repeat_interleave(n, dim=0)
    leaves: list[list[_Node]] = [[] for _ in p.rows]
    layer = 0
    while nodes:
        length = len(nodes[0].tokens)
        seg = min(s.segment_length, m_max - length)
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
                states.keep(go)
                logits, tokens = logits[torch.tensor(go, device=logits.device)], tokens[go]
                live = [live[b] for b in go]
            logits = policy.step(tokens)
            if guide is not None:
                guide.commit(tokens)
        if implicit:
            for x in nodes:
                x.value = x.total
        else:
            _rank_by_rm(p, reader, nodes)
        last = length + seg >= m_max
        survivors: list[_Node] = []
        for i in range(len(p.rows)):
            mine = [x for x in nodes if x.prompt == i]
            if last:
                leaves[i] += mine
                continue
            keep = max(1, math.floor(s.keep_fraction * len(mine) + 1e-9))
            best = sorted(
                sorted(mine, key=lambda x: (-x.score, x.order))[:keep], key=lambda x: x.order
            )
            leaves[i] += [x for x in best if x.done]
            survivors += [x for x in best if not x.done]
        if last or not survivors:
            break
        states.keep([nodes.index(x) for x in survivors], reader=True)
        rows = [live.index(nodes.index(x)) for x in survivors]  # survivors are all still live
        states.keep(rows)
        logits = logits[torch.tensor(rows, device=logits.device)]
        pending = torch.tensor([x.tokens[-1] for x in survivors], device=logits.device)
        logits = policy.step(pending)  # the survivor's last token, read once for all its children
        if guide is not None:
            guide.commit(pending)
        states.repeat(s.children)
        logits = logits.repeat_interleave(s.children, dim=0)
        layer += 1
        nodes, count = [], [0] * len(p.rows)
        for x in survivors:
            for _ in range(s.children):
                c = count[x.prompt]
                count[x.prompt] += 1
                key = p.keys[p.rows[x.prompt]]
                gen = make_generator(s.seed, key, sample=layer * CHILD_STREAM + c)
                nodes.append(_Node(x.prompt, c, gen, list(x.tokens), total=x.total, read=x.read))
    for i, mine in enumerate(leaves):
        best = max(mine, key=lambda x: (x.value, -mine.index(x)))
        out[i].new_ids, out[i].finished, out[i].reward = best.tokens, best.done, best.value
    return out


def _rank_by_rm(p: Parts, reader, nodes: list[_Node]) -> None:
    """Each candidate's RM reward of prompt + partial answer (its score and value): the reader
    extended by the tokens it has not read, or, without a reader, each read whole."""
    from argsfw.api import score_sequences

    if reader is None:
        seqs = [p.prompts[x.prompt] + x.tokens for x in nodes]
        rewards = score_sequences(p, seqs, [p.rows[x.prompt] for x in nodes]).tolist()
    else:
        rewards = reader.extend([x.tokens[x.read :] for x in nodes]).tolist()
        for x in nodes:
            x.read = len(x.tokens)
    for x, r in zip(nodes, rewards):
        x.score = x.value = r


_COMMON = dict(
    settings=TreeBoN,
    run=_run,
    samples=True,
    check=_check,
    label_knobs=(("num_samples", "N"), ("segment_length", "seg"), ("children", "c")),
    curve="num_samples",
    marker="X",
)
TREEBON = Method(
    name="treebon",
    summary="TreeBoN: best-of-N grown as a tree of segments, pruned by DPO's weighted implicit reward (reward_model=<DPO run>)",
    needs="implicit",
    color="#1b9e77",
    **_COMMON,
)
TREEBON_RM = Method(
    name="treebon-rm",
    summary="TreeBoN pruned and picked by the sequence RM's reward of each partial answer",
    needs="sequence",
    color="#66c2a5",
    **_COMMON,
)
