"""Cost-gated ARGS (``args-gated``): call the reward model only where the policy is unsure.

At each step and for each row, the policy's top-1 probability ``p = max softmax(logits)`` is
compared with the threshold τ (``gate_threshold``):

- ``p > τ`` (confident): take the policy's top token, no reward model call;
- ``p ≤ τ``: the ARGS-greedy rule, ``argmax over the top-k of logit(v) + w · r([x, v])``.

Why the probability and not a logit margin: τ lives in [0, 1] whatever the model's logit
scale, vocabulary or size, and its ends mean something exact. ``p ≤ 1`` always, so τ = 1
scores every step (exactly ARGS-greedy); ``p ≥ 1/V > 0``, so τ = 0 skips every step (exactly
greedy). A logit margin is unbounded, so no margin value means "never skip" for every model.

Keeping the RM cache current for free. The RM must see every committed token, including
those of skipped steps. A skipped token is *deferred*: appended to the row's pending list,
and read at the row's next scored step as part of that step's tree block, ahead of the k
candidates (the pending tokens extend the shared prefix; the candidates see them). A skip
costs nothing now; a run of skips costs one forward later, and a row that never scores again
never pays for them. At a step where only some rows score, only those rows enter the RM
forward (`RewardCache.forward(rows=...)`): their cache rows are gathered, run and scattered
back; the other rows get masked hole columns (no RM work, a few cache columns of memory).
"""

from __future__ import annotations

import torch

from argsfw.decoding.accounting import DecodeStats, RowCursors
from argsfw.decoding.scoring import RewardCache, model_device_dtype, shared_block
from argsfw.decoding.search import StepContext, check_finite


def unsure_rows(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Rows [S] of ``logits`` [B, V] whose top-1 probability is ≤ ``threshold`` (the rows to score)."""
    p_top = logits.float().softmax(-1).amax(-1)  # [B]
    return (p_top <= threshold).nonzero()[:, 0]


class GatedArgsChooser:
    """One ``args-gated`` step: greedy where the policy is confident, the ARGS-greedy rule elsewhere.

    Returns the tokens [B] and the chosen candidates' rewards [B], NaN for rows that skipped
    the reward model (`decode_batch` counts the scored steps from that).
    """

    def __init__(self, weight: float, topk: int, threshold: float):
        self.weight, self.topk, self.threshold = weight, topk, threshold

    def __call__(
        self, logits: torch.Tensor, scorer, ctx: StepContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens = logits.argmax(-1)  # [B] what plain greedy takes
        if scorer is None or self.weight == 0:
            return tokens, None
        rows = unsure_rows(logits, self.threshold)
        rewards = torch.full(tokens.shape, float("nan"), device=logits.device)
        if rows.numel():
            top_logits, cands = logits[rows].topk(self.topk, dim=-1)  # [S, k] each
            r = scorer.score(cands, rows)  # [S, k]
            check_finite(r, cands, StepContext(ctx.step, [ctx.rows[i] for i in rows.tolist()], []))
            idx = (top_logits + self.weight * r).argmax(-1)  # [S]
            tokens[rows] = cands.gather(1, idx[:, None])[:, 0]
            rewards[rows] = r.gather(1, idx[:, None])[:, 0]
        return tokens, rewards


class GatedScorer:
    """Shared-tokenizer cached scorer that scores any subset of rows and defers the others' tokens.

    Same life cycle as `SharedTokenizerScorer` (``start``, ``score``, ``keep``, ``commit``),
    but ``score`` takes the batch rows [S] it scores; rows left out keep their committed
    tokens in a pending list until their next scored step. Like the ungated scorer, the
    chosen candidate's keys and values are adopted, never re-read.
    """

    def __init__(self, rm, stats: DecodeStats, reads: RowCursors | None = None):
        self.rm, self.stats, self.reads = rm, stats, reads
        self.device, _ = model_device_dtype(rm)

    def start(self, ids: torch.Tensor, mask: torch.Tensor, prompts: list[list[int]]) -> None:
        """Begin a batch of unpadded policy-token ``prompts`` (read at each row's first scored step)."""
        self.cache = RewardCache(self.rm, self.stats, len(prompts), self.reads)
        self.pending = [list(p) for p in prompts]  # per row: committed tokens the RM has not read
        self.next_pos = [0] * len(prompts)  # per row: position id of its first pending token
        self.held: torch.Tensor | None = (
            None  # [B, k] candidates held in the cache, -1 = not scored
        )

    def score(self, cands: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Rewards [S, k] (float32) of appending each of ``cands`` [S, k] to batch rows ``rows`` [S].

        Sets ``committed`` as `SharedTokenizerScorer.score` does (rows ``rows`` only).
        """
        out_dev = cands.device
        rows_l = rows.tolist()
        batch, k = len(self.pending), cands.shape[1]
        width = max(len(self.pending[r]) for r in rows_l)
        pend = torch.zeros((len(rows_l), width), dtype=torch.long)
        valid = torch.zeros((len(rows_l), width), dtype=torch.bool)
        for j, r in enumerate(rows_l):  # left padded, like the prompts of the ungated scorer
            if self.pending[r]:
                pend[j, width - len(self.pending[r]) :] = torch.tensor(self.pending[r])
                valid[j, width - len(self.pending[r]) :] = True
        start = torch.tensor([self.next_pos[r] for r in rows_l], dtype=torch.long)
        cands = cands.to(self.device)
        block = shared_block(
            pend.to(self.device), valid.to(self.device), start.to(self.device), cands
        )
        sub = None if len(rows_l) == batch else rows.to(self.device)
        rewards = self.cache.forward(block, hold=True, rows=sub)
        self.committed = (block.ids[:, :width], valid.to(self.device), self.cache.commit_rewards)
        for r in rows_l:
            self.next_pos[r] += len(self.pending[r])
            self.pending[r] = []
        self.held = torch.full((batch, k), -1, dtype=torch.long, device=self.device)
        self.held[rows.to(self.device)] = cands
        return rewards.to(out_dev)

    def commit(self, chosen: torch.Tensor, sequences: list[list[int]] | None = None) -> None:
        """Append the chosen tokens [B]: adopted where the row scored this step, deferred elsewhere."""
        chosen = chosen.to(self.device)
        scored = [False] * len(self.pending)
        if self.held is not None:
            scored = (self.held[:, 0] >= 0).tolist()
            idx = (self.held == chosen[:, None]).int().argmax(-1)  # top-k ids are distinct
            self.cache.adopt(idx)
            self.held = None
        for r, (tok, s) in enumerate(zip(chosen.tolist(), scored)):
            if s:
                self.next_pos[r] += 1
            else:
                self.pending[r].append(tok)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` [B'] of the batch."""
        idx = rows.tolist()
        self.cache.keep(rows)
        self.pending = [self.pending[i] for i in idx]
        self.next_pos = [self.next_pos[i] for i in idx]
        if self.held is not None:
            self.held = self.held[rows.to(self.device)]
