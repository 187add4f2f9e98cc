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

Caches: the policy and the RM each keep one KV cache of prompt + accepted answer per row and
read every sampled token once, in lock-step (a candidate's reward is the RM head at its last
token that is not the pad id, where the RM's own Hugging Face forward reads it). A rejected
candidate's columns are masked out of later attention instead of re-read or cropped (rows move
independently); the best candidate's are kept aside so the fallback restores them; the caches
are compacted when the masked columns outnumber the kept ones. Each model reads the prompt once
and no accepted token twice. An RM that cannot be cached that way (an encoder, another
tokenizer, ``decode.scorer=full``) re-reads every candidate whole instead.

Costs: ``llm_tokens`` and ``rm_tokens`` count every token each model read, rejected candidates
included (the policy also reads a candidate's last token when it ends the answer, to keep the
two caches in step: one position per such candidate); ``scored_steps`` counts the candidates
scored. The cache helpers here (`_show`, `_compact`) are small so that shared cache primitives
can replace them.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch

from argsfw.decoding.registry import Method, Parts, register

COMPACT_SLACK = 16  # compact once masked columns exceed the kept ones by this many


@dataclass
class CardsOptions:
    """CARDS's own knobs (``decode.options.*``), defaults from the authors' code and HH configs."""

    entropy_threshold: float = field(
        default=3.0,
        metadata={"range": "> 0", "doc": "a segment ends before a token whose next-token entropy (nats) reaches this"},
    )  # fmt: skip
    min_segment: int = field(default=4, metadata={"range": "integer >= 1", "doc": "tokens before the entropy rule may end a segment"})  # fmt: skip
    max_segment: int = field(default=64, metadata={"range": "integer >= min_segment", "doc": "longest segment"})  # fmt: skip
    reward_threshold: float = field(
        default=0.2, metadata={"range": "any number", "doc": "r*: the acceptance threshold at the answer's end, in the RM's units"}
    )  # fmt: skip
    alpha: float = field(default=0.5, metadata={"range": "[0, 1]", "doc": "tau_0 = (1 - alpha) r(prompt) + alpha r*"})  # fmt: skip
    beta: float | None = field(
        default=None, metadata={"range": "> 0 or null", "doc": "acceptance temperature in exp((r - tau) / beta); null: the sampling temperature"}
    )  # fmt: skip
    max_rejections: int = field(
        default=20, metadata={"range": "integer >= 0", "doc": "rejections per segment before the best candidate is kept"}
    )  # fmt: skip
    top_k: int = field(default=40, metadata={"range": "integer >= 1", "doc": "tokens sampled from (top-k at temperature T)"})  # fmt: skip

    def __post_init__(self) -> None:
        def integer(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        checks = [
            ("entropy_threshold", number(self.entropy_threshold) and self.entropy_threshold > 0, "a number > 0"),
            ("min_segment", integer(self.min_segment) and self.min_segment >= 1, "an integer >= 1"),
            ("max_segment", integer(self.max_segment) and self.max_segment >= self.min_segment, "an integer >= min_segment"),
            ("reward_threshold", number(self.reward_threshold), "a finite number"),
            ("alpha", number(self.alpha) and 0 <= self.alpha <= 1, "in [0, 1]"),
            ("beta", self.beta is None or (number(self.beta) and self.beta > 0), "a number > 0 or null"),
            ("max_rejections", integer(self.max_rejections) and self.max_rejections >= 0, "an integer >= 0"),
            ("top_k", integer(self.top_k) and self.top_k >= 1, "an integer >= 1"),
        ]  # fmt: skip
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} must be {want}")


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


class _RewardLane:
    """The sequence RM read token by token beside the policy, its KV cache kept (a `PolicyState`
    over the RM's backbone); rewards are its scalar head at each row's newest token."""

    def __init__(self, rm, ids: torch.Tensor, mask: torch.Tensor, stats):
        from argsfw.decoding.policy import PolicyState
        from argsfw.decoding.scoring import model_device_dtype, reward_parts

        backbone, self.head = reward_parts(rm)
        self.rm, self.stats = rm, stats
        self.device, _ = model_device_dtype(rm)
        self.pad = getattr(rm.config, "pad_token_id", None)
        ids, mask = ids.to(self.device), mask.to(self.device)
        self.state = PolicyState(backbone, ids, mask, stats, role="rm", head=False)

    def prefill(self, prompts: list[list[int]]) -> tuple[list[float], list[int]]:
        """Each prompt's reward and the RM tokens read for it (its length; twice when it ends in the pad id)."""
        rewards, cost = self._rewards(self.state.prefill()), [len(q) for q in prompts]
        for j, q in enumerate(prompts):
            if q[-1] == self.pad:  # HF reads before trailing pads: ask its own forward, once
                x = torch.tensor([q], device=self.device)
                rewards[j] = float(self.rm(input_ids=x).logits[0, 0])
                cost[j] += len(q)
                self.stats.rm_forwards += 1
                self.stats.rm_tokens_in += len(q)
        return rewards, cost

    def step(self, tokens: torch.Tensor) -> list[float]:
        """Read one token per row; returns the head at it, per row."""
        return self._rewards(self.state.step(tokens))

    def _rewards(self, hidden: torch.Tensor) -> list[float]:
        return self.head(hidden)[:, 0].float().tolist()


def _show(states, j: int, cols: torch.Tensor, on: bool) -> None:
    """Mark the cache columns ``cols`` [C] (bool) of row ``j`` real (``on``) or masked, in every state."""
    for st in states:
        st.mask[j, cols.to(st.mask.device)] = int(on)


def _compact(states, keep: torch.Tensor) -> torch.Tensor:
    """Drop the cache columns not in ``keep`` [B, C] from every state's cache and mask; returns the
    index [B, W] of the columns kept (left padded, order kept) so other [B, C] tables can follow."""
    width = int(keep.sum(1).max())
    idx = torch.sort(keep.to(torch.int8), dim=1, stable=True).indices[:, keep.shape[1] - width :]
    for st in states:
        i = idx.to(st.mask.device)
        for layer in st.cache.layers:
            g = i[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[-1])
            layer.keys, layer.values = layer.keys.gather(2, g), layer.values.gather(2, g)
        st.mask = st.mask.gather(1, i)
    return idx


def _entropy(logits: torch.Tensor) -> list[float]:
    """Entropy (nats) of ``softmax(logits)`` per row of [B, V]."""
    logp = logits.log_softmax(-1)
    return (-(logp.exp() * logp).sum(-1)).tolist()


def _cached(p: Parts) -> bool:
    """Whether the RM can be read in lock-step with a KV cache (a decoder sharing the policy's tokens)."""
    from argsfw.decoding.scoring import reward_parts, rm_kind

    d = p.decoder
    if not d.shared_tokenizer or rm_kind(d.rm) != "causal":
        return False
    takes_pos = "position_ids" in inspect.signature(reward_parts(d.rm)[0].forward).parameters
    return takes_pos and d.scorer_name(p.s) in ("tree", "expanded")


@torch.inference_mode()
def _run(p: Parts):
    from argsfw.decoding.baselines import TopKSampler
    from argsfw.decoding.methods.best_of_n import CHOICE_STREAM, score_whole
    from argsfw.decoding.sampling import make_generator
    from argsfw.decoding.search import RowResult, StepContext

    s, o = p.s, CARDS.option_values(p.s)
    beta = float(o.beta if o.beta is not None else s.temperature)
    r_star, m_max, eos = float(o.reward_threshold), s.max_new_tokens, set(p.eos)
    policy = p.policy
    logits = policy.prefill()  # [B, V]
    sampler = TopKSampler(min(o.top_k, logits.shape[-1]), s.temperature)
    tok_gens = [make_generator(s.seed, p.keys[r]) for r in p.rows]
    acc_gens = [make_generator(s.seed, p.keys[r], sample=CHOICE_STREAM) for r in p.rows]
    out = [RowResult(llm_tokens=len(q)) for q in p.prompts]
    lane = _RewardLane(p.decoder.rm, policy.ids, policy.mask, p.stats) if _cached(p) else None
    if lane is not None:
        p.stats.scorer = "lockstep"
        r0, cost = lane.prefill(p.prompts)
    else:
        rewards, cost = score_whole(p, p.prompts)
        r0 = rewards.tolist()
    rows = [_Row([], (1 - o.alpha) * r + o.alpha * r_star, r) for r in r0]
    for res, c in zip(out, cost):
        res.rm_tokens = c
    states = [policy] + ([lane.state] if lane is not None else [])
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
            n_ans = len(row.acc) + len(row.cand)
            terminal = row.cand[-1] in eos or n_ans >= m_max
            if (
                terminal
                or len(row.cand) >= o.max_segment
                or (len(row.cand) >= o.min_segment and ent[j] >= o.entropy_threshold)
            ):
                ended.append((j, terminal))
        if ended and lane is None:
            seqs = [
                p.prompts[alive[j]] + rows[alive[j]].acc + rows[alive[j]].cand for j, _ in ended
            ]
            rewards, cost = score_whole(p, seqs)
            for (j, _), r, c in zip(ended, rewards.tolist(), cost):
                rows[alive[j]].real = r
                out[alive[j]].rm_tokens += c
        done = set()
        for j, terminal in ended:
            i = alive[j]
            row, r = rows[i], rows[i].real
            out[i].scored_steps += 1
            current = r > row.best_r
            if current:
                row.best, row.best_r = list(row.cand), r
                row.best_end = (terminal, None if terminal else logits[j].clone())
                parked[j] = cand[j]
            if row.rejections >= o.max_rejections:
                if not current:  # the fallback: back to the best candidate's columns
                    _show(states, j, cand[j], False)
                    _show(states, j, parked[j], True)
                    for st in states:
                        st.next_pos[j] = row.start_pos + len(row.best)
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
                    _show(states, j, cand[j], False)
                    cand[j] = False
                    for st in states:
                        st.next_pos[j] = row.start_pos
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
            for st in states:
                st.keep(keep_t.to(st.mask.device))
            logits, cand, parked = logits[keep_t.to(logits.device)], cand[keep_t], parked[keep_t]
            alive = [alive[j] for j in keep]
        ctx = StepContext(0, [p.rows[i] for i in alive], [tok_gens[i] for i in alive])
        tokens, _ = sampler(logits, None, ctx)
        for i, t in zip(alive, tokens.tolist()):
            rows[i].cand.append(t)
            out[i].llm_tokens += 1
        logits = policy.step(tokens)
        if lane is not None:
            for i, t, r in zip(alive, tokens.tolist(), lane.step(tokens)):
                out[i].rm_tokens += 1
                if t != lane.pad:
                    rows[i].real = r
        cand = torch.cat([cand, torch.ones(len(alive), 1, dtype=torch.bool)], dim=1)
        parked = torch.cat([parked, torch.zeros(len(alive), 1, dtype=torch.bool)], dim=1)
        p.stats.new_tokens += len(alive)
        p.meter.sample()
        kept = policy.mask.bool().cpu() | parked
        if cand.shape[1] > 2 * int(kept.sum(1).max()) + COMPACT_SLACK:
            idx = _compact(states, kept)
            cand, parked = cand.gather(1, idx), parked.gather(1, idx)
    return out


def _label(s) -> str:
    o = CARDS.option_values(s)
    return f"cards r*={o.reward_threshold:g} H={o.entropy_threshold:g}"


CARDS = register(
    Method(
        name="cards",
        summary="CARDS: segments cut where the policy is unsure, each kept by reward rejection sampling against a rising threshold",
        knobs=("temperature",),
        needs="sequence",
        run=_run,
        samples=True,
        options=CardsOptions,
        label=_label,
        color="#000000",
        marker="P",
        counts_scored_steps=True,
    )
)
