"""CARDS (Li et al., 2024, "Cascade Reward Sampling for Efficient Decoding-Time Alignment",
arXiv 2406.16306; the authors' code: github.com/lblaoke/CARDS, ``seg_rs_generate``): segment-level
rejection sampling with a sequence RM.

The answer grows a segment at a time. A candidate segment is sampled from the policy (top-k at
temperature T) until the policy is unsure: it ends before a token whose next-token entropy (the
raw logits' softmax, in nats) reaches ``entropy_threshold`` once it has ``min_segment`` tokens,
at ``max_segment`` tokens, at EOS, or when the answer is full. The RM reads prompt + answer +
candidate, and the candidate is accepted when ``U < min(1, exp((r - tau) / beta))``, U uniform,
``tau = min(r*, tau_0 + L (r* - tau_0) / max_new_tokens)`` with ``L`` the answer's length with
the candidate and ``tau_0 = (1 - alpha) r(prompt) + alpha r*``. A rejected candidate is
resampled; after ``max_rejections`` rejections the next candidate is scored without the test and
the best of them all is kept (ties: the earlier). As in the authors' code, ``beta`` is the
sampling temperature unless given, and ``r*`` is in the RM's own units (their HH config: 0.2 for
their OPT-125M RM): set it per RM. Unlike their code, EOS ends a segment (and, accepted, the
answer), the answer never passes ``max_new_tokens``, and the KV caches are kept.

Caches: the policy (`PolicyState`) and the RM (`argsfw.decoding.prefix_cache.RewardReader`)
each keep one KV cache of prompt + accepted answer per row and read every sampled token once,
in lock-step (a candidate's reward is the reader's: the RM head at its last token that is not
the pad id, where the RM's own Hugging Face forward reads it). Rows accept and reject
independently, and neither cache can drop one row's last columns, so `_Lanes` does what CARDS
needs beyond those primitives: a rejected candidate's columns are masked out of later attention
(and its ledger cursors rewound) instead of re-read or cropped, the best candidate's are kept
aside so the fallback restores them, and the caches are compacted when the masked columns
outnumber the kept ones. Each model reads the prompt once and no accepted token twice. An RM
the reader cannot cache (an encoder, another tokenizer, a probe that did not choose ``tree``)
re-reads every candidate whole instead.

Costs, counted by the batch's ledger: every token each model read, rejected candidates included
(the policy also reads a candidate's last token when it ends the answer, to keep the two caches
in step: one position per such candidate); ``scored_steps`` counts the candidates scored. A
resampled candidate that draws the same tokens as a rejected one after the same answer reads
them again: the ledger counts those as re-reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from argsfw.decoding.config import VOCAB, knob
from argsfw.decoding.methods.baselines import Sampling
from argsfw.decoding.registry import Method, Parts
from argsfw.decoding.types import DecodeInputError

if TYPE_CHECKING:
    import torch

COMPACT_SLACK = 16  # compact once masked columns exceed the kept ones by this many


@dataclass
class Cards(Sampling):
    """CARDS's knobs, defaults from the authors' code and HH configs."""

    entropy_threshold: float = knob(
        3.0, "a segment ends before a token whose next-token entropy (nats) reaches this", gt=0
    )
    min_segment: int = knob(4, "tokens before the entropy rule may end a segment", ge=1)
    max_segment: int = knob(64, "longest segment (>= min_segment)", ge=1)
    reward_threshold: float = knob(
        0.2, "r*: the acceptance threshold at the answer's end, in the RM's units"
    )
    alpha: float = knob(0.5, "tau_0 = (1 - alpha) r(prompt) + alpha r*", ge=0, le=1)
    beta: float | None = knob(
        None, "acceptance temperature in exp((r - tau) / beta); null: the sampling temperature",
        gt=0, also=(None,),
    )  # fmt: skip
    max_rejections: int = knob(20, "rejections per segment before the best candidate is kept", ge=0)
    topk: int = knob(40, "k: tokens sampled from (top-k at temperature T)", ge=1, le=VOCAB)


def _check(s) -> None:
    if s.max_segment < s.min_segment:
        raise DecodeInputError(
            f"decode.max_segment={s.max_segment} must be >= decode.min_segment ({s.min_segment})"
        )


@dataclass
class _Row:
    """One prompt's search state: the accepted answer, the candidate, this segment's best."""

    acc: list[int]
    tau0: float
    real: float  # reward of the row's sequence so far, read at its last non-pad token
    cand: list[int] = field(default_factory=list)
    start_logits: torch.Tensor | None = None  # next-token logits after the accepted answer
    start_pos: int = 0
    start_real: float = 0.0
    rejections: int = 0
    best: list[int] | None = None
    best_r: float = -math.inf
    best_end: tuple[bool, torch.Tensor | None] = (False, None)  # (terminal, logits after it)
    best_nodes: list[int] = field(default_factory=list)  # each lane's ledger node after the best


class _Lanes:
    """The policy's cache and, when cached, the RM reader's, stepped in lock-step over the same
    columns: per row, masked columns (rejected candidates), rewound or moved ledger cursors, and
    compaction. Why here: the shared primitives (`PolicyState`, `RewardReader`) select, repeat
    and extend whole rows; CARDS moves each row back to its own accepted answer."""

    def __init__(self, policy, reader):
        self.policy, self.reader = policy, reader

    def _masks(self):
        """``(tensor [B, C], setter)`` of each cache's column mask."""
        out = [(self.policy.mask, lambda m: setattr(self.policy, "mask", m))]
        if self.reader is not None:
            rc = self.reader.cache
            out.append((rc.col_valid, lambda m: setattr(rc, "col_valid", m)))
        return out

    def _cursors(self):
        return [self.policy.reads] + ([self.reader.cache.reads] if self.reader else [])

    def show(self, j: int, cols: torch.Tensor, on: bool) -> None:
        """Mark the columns ``cols`` [C] (bool) of row ``j`` real (``on``) or masked, in both caches."""
        for mask, _ in self._masks():
            mask[j, cols.to(mask.device)] = on

    def _at(self, j: int, pos: int, reward: float) -> None:
        self.policy.next_pos[j] = pos
        if self.reader is not None:
            self.reader.next_pos[j], self.reader.last[j] = pos, reward

    def back(self, j: int, pos: int, reward: float) -> None:
        """Row ``j`` drops its candidate: back to its ``pos``-token prefix, whose reward is ``reward``."""
        self._at(j, pos, reward)
        for cur in self._cursors():
            cur.rewind(j, pos)

    def nodes(self, j: int) -> list[int]:
        """Where row ``j`` stands in each model's ledger."""
        return [cur.nodes[j] for cur in self._cursors()]

    def move(self, j: int, pos: int, nodes: list[int], reward: float) -> None:
        """Row ``j`` adopts columns it had read (a parked candidate): its ``pos``-token prefix,
        standing at ledger ``nodes`` (`nodes`' answer then), with reward ``reward``."""
        self._at(j, pos, reward)
        for cur, node in zip(self._cursors(), nodes):
            cur.move(j, node)

    def keep(self, rows: torch.Tensor) -> None:
        self.policy.keep(rows)
        if self.reader is not None:
            self.reader.keep(rows.tolist())

    def compact(self, keep: torch.Tensor) -> torch.Tensor:
        """Drop the columns not in ``keep`` [B, C] from both caches and masks; returns the index
        [B, W] of the columns kept (left padded, order kept) so other [B, C] tables can follow."""
        import torch

        width = int(keep.sum(1).max())
        idx = torch.sort(keep.to(torch.int8), dim=1, stable=True).indices[
            :, keep.shape[1] - width :
        ]
        caches = [self.policy.cache] + ([self.reader.cache.cache] if self.reader else [])
        for cache, (mask, set_mask) in zip(caches, self._masks()):
            i = idx.to(mask.device)
            for layer in cache.layers:
                g = i[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[-1])
                layer.keys, layer.values = layer.keys.gather(2, g), layer.values.gather(2, g)
            set_mask(mask.gather(1, i))
        return idx


def _entropy(logits: torch.Tensor) -> list[float]:
    """Entropy (nats) of ``softmax(logits)`` per row of [B, V]."""
    logp = logits.log_softmax(-1)
    return (-(logp.exp() * logp).sum(-1)).tolist()


def _run(p: Parts):
    import torch

    with torch.inference_mode():
        return _search(p)


def _search(p: Parts):
    import torch

    from argsfw.api import score_sequences
    from argsfw.decoding.baselines import TopKSampler
    from argsfw.decoding.methods.best_of_n import CHOICE_STREAM
    from argsfw.decoding.prefix_cache import reward_reader
    from argsfw.decoding.sampling import make_generator
    from argsfw.decoding.search import RowResult, StepContext

    s = p.s
    beta = float(s.beta if s.beta is not None else s.temperature)
    r_star, m_max, eos = float(s.reward_threshold), s.max_new_tokens, set(p.eos)
    policy = p.policy
    logits = policy.prefill()  # [B, V]
    sampler = TopKSampler(s.topk, s.temperature)
    tok_gens = [make_generator(s.seed, p.keys[r]) for r in p.rows]
    acc_gens = [make_generator(s.seed, p.keys[r], sample=CHOICE_STREAM) for r in p.rows]
    out = [RowResult() for _ in p.prompts]
    reader = reward_reader(p)
    if reader is not None:
        p.stats.scorer = "tree"
        r0 = reader.extend(p.prompts).tolist()
    else:
        r0 = score_sequences(p, p.prompts, list(p.rows)).tolist()
    lanes = _Lanes(policy, reader)
    rows = [_Row([], (1 - s.alpha) * r + s.alpha * r_star, r) for r in r0]
    alive = list(range(len(rows)))  # batch row -> prompt
    cand = torch.zeros(policy.mask.shape, dtype=torch.bool)  # columns of each row's candidate
    parked = torch.zeros_like(cand)  # columns of each row's best candidate, masked but kept

    def new_segment(j: int, row: _Row) -> None:
        row.start_logits, row.start_real = logits[j].clone(), row.real
        row.start_pos = len(p.prompts[alive[j]]) + len(row.acc)
        row.cand, row.rejections, row.best, row.best_r = [], 0, None, -math.inf
        parked[j] = False

    def take(j: int, row: _Row, tokens: list[int], end: tuple[bool, torch.Tensor | None]) -> bool:
        """Append ``tokens`` to the answer; True when the answer is done."""
        row.acc += tokens
        cand[j] = False
        if end[0]:
            return True
        logits[j] = end[1]
        new_segment(j, row)
        return False

    for j, row in enumerate(rows):
        new_segment(j, row)
    while alive:
        ent = _entropy(logits)
        ended = []
        for j, i in enumerate(alive):
            row = rows[i]
            if not row.cand:
                continue
            terminal = row.cand[-1] in eos or len(row.acc) + len(row.cand) >= m_max
            if (
                terminal
                or len(row.cand) >= s.max_segment
                or (len(row.cand) >= s.min_segment and ent[j] >= s.entropy_threshold)
            ):
                ended.append((j, terminal))
        if ended and reader is None:
            seqs = [
                p.prompts[alive[j]] + rows[alive[j]].acc + rows[alive[j]].cand for j, _ in ended
            ]
            slots = [p.rows[alive[j]] for j, _ in ended]
            for (j, _), r in zip(ended, score_sequences(p, seqs, slots).tolist()):
                rows[alive[j]].real = r
        done = set()
        for j, terminal in ended:
            i = alive[j]
            row, r = rows[i], rows[i].real
            out[i].scored_steps += 1
            current = r > row.best_r
            if current:
                row.best, row.best_r = list(row.cand), r
                row.best_end = (terminal, None if terminal else logits[j].clone())
                row.best_nodes = lanes.nodes(j)
                parked[j] = cand[j]
            if row.rejections >= s.max_rejections:
                if not current:  # the fallback: back to the best candidate's columns
                    lanes.show(j, cand[j], False)
                    lanes.show(j, parked[j], True)
                    lanes.move(j, row.start_pos + len(row.best), row.best_nodes, row.best_r)
                    row.real = row.best_r
                finished = take(j, row, row.best, row.best_end)
            else:
                tau = min(
                    r_star, row.tau0 + (len(row.acc) + len(row.cand)) * (r_star - row.tau0) / m_max
                )
                u = float(torch.rand((), generator=acc_gens[i]))
                if u < math.exp(min(0.0, (r - tau) / beta)):
                    finished = take(j, row, row.cand, (terminal, logits[j].clone()))
                else:  # rejected: mask its columns, resample from the accepted answer
                    row.rejections += 1
                    lanes.show(j, cand[j], False)
                    cand[j] = False
                    lanes.back(j, row.start_pos, row.start_real)
                    logits[j], row.real, row.cand = row.start_logits, row.start_real, []
                    finished = False
            if finished:
                done.add(j)
                out[i].new_ids, out[i].reward = row.acc, row.real
                out[i].finished = bool(row.acc) and row.acc[-1] in eos
        keep = [j for j in range(len(alive)) if j not in done]
        if not keep:
            break
        if done:
            keep_t = torch.tensor(keep, dtype=torch.long)
            lanes.keep(keep_t)
            logits, cand, parked = logits[keep_t.to(logits.device)], cand[keep_t], parked[keep_t]
            alive = [alive[j] for j in keep]
        ctx = StepContext(0, [p.rows[i] for i in alive], [tok_gens[i] for i in alive])
        tokens, _ = sampler(logits, None, ctx)
        for i, t in zip(alive, tokens.tolist()):
            rows[i].cand.append(t)
        logits = policy.step(tokens)
        if reader is not None:
            for i, r in zip(alive, reader.extend([[t] for t in tokens.tolist()]).tolist()):
                rows[i].real = r
        cand = torch.cat([cand, torch.ones(len(alive), 1, dtype=torch.bool)], dim=1)
        parked = torch.cat([parked, torch.zeros(len(alive), 1, dtype=torch.bool)], dim=1)
        p.stats.new_tokens += len(alive)
        p.meter.sample()
        kept = policy.mask.bool().cpu() | parked
        if cand.shape[1] > 2 * int(kept.sum(1).max()) + COMPACT_SLACK:
            idx = lanes.compact(kept)
            cand, parked = cand.gather(1, idx), parked.gather(1, idx)
    return out


CARDS = Method(
    name="cards",
    summary="CARDS: segments cut where the policy is unsure, each kept by reward rejection sampling against a rising threshold",
    settings=Cards,
    needs="sequence",
    run=_run,
    samples=True,
    check=_check,
    label_knobs=(("reward_threshold", "r*"), ("entropy_threshold", "H")),
    color="#000000",
    marker="P",
    counts_scored_steps=True,
)
