"""Shared prefixes for whole-sequence methods: a sequence reward model that reads each token once.

best-of-N, soft and speculative best-of-N and blockwise controlled decoding score sequences
(prompt + a sample, prompt + a partial answer, prompt + prefix + a block) as the reward model's
own Hugging Face forward scores them. Read whole, every sample re-reads its prompt and every
partial read re-reads the answer so far. `RewardReader` gives the same rewards from one KV
cache per row that only grows:

* ``extend(tokens)``: append each row's new tokens in one forward and return each row's reward
  of its whole sequence so far (the first call reads the prompts);
* ``repeat(n)``: expand each row to ``n`` rows sharing its cache (a prompt read once, then N
  samples);
* ``keep(rows)``: select or drop rows (rejected samples, losing blocks) without re-reading.

The policy's `argsfw.decoding.policy.PolicyState` has the same three (``extend``/``step``,
``repeat``, ``keep``). Both tell the batch's ledger what they compute, so re-reads and FLOPs
are counted where they happen.

A reward is read where ``AutoModelForSequenceClassification`` reads it: at the rightmost token
that is not the RM's pad id (a sequence ending in EOS == pad is read before the EOS). The
reader takes it from the head at that column of the forward that computed it, or keeps the
row's earlier reward when the new tokens are all pad ids. The rewards equal the RM's own
forward's within float tolerance: the tree-masked cache (`argsfw.decoding.scoring.RewardCache`)
is the one the probe verifies for the ARGS scorer, so `reward_reader` hands one out only where
the probe chose ``tree``.
"""

from __future__ import annotations

import torch

from argsfw.decoding.accounting import DecodeStats, RowCursors
from argsfw.decoding.scoring import RewardCache, model_device_dtype, shared_block


class RewardReader:
    """A sequence RM's prefix cache over ``rows`` rows, each a sequence that only grows.

    ``reads``: the rows' `RowCursors` (their prompts' slots); None counts into a private ledger.
    """

    def __init__(self, rm, stats: DecodeStats, rows: int, reads: RowCursors | None = None):
        self.cache = RewardCache(rm, stats, rows, reads)
        self.device, _ = model_device_dtype(rm)
        self.pad = getattr(rm.config, "pad_token_id", None)
        self.next_pos = torch.zeros(rows, dtype=torch.long)  # [B] position id of the next token
        self.last = torch.full((rows,), float("nan"))  # [B] reward of each row's sequence so far

    @torch.inference_mode()
    def extend(self, tokens: list[list[int]]) -> torch.Tensor:
        """Append ``tokens[b]`` to row b (possibly none) in one forward; returns every row's reward [B] (float32, CPU).

        Rows without new tokens stay out of the forward and keep their reward (NaN before their
        first token that is not the pad id).
        """
        if len(tokens) != self.last.shape[0]:
            raise ValueError(
                f"RewardReader.extend: {len(tokens)} token lists for {self.last.shape[0]} rows"
            )
        rows = [b for b, t in enumerate(tokens) if t]
        if not rows:
            return self.last.clone()
        width = max(len(tokens[b]) for b in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        valid = torch.zeros((len(rows), width), dtype=torch.bool)
        for j, b in enumerate(rows):  # left padded: each row's last token in the last column
            ids[j, width - len(tokens[b]) :] = torch.tensor(tokens[b], dtype=torch.long)
            valid[j, width - len(tokens[b]) :] = True
        sub = torch.tensor(rows, dtype=torch.long)
        start = self.next_pos[sub]
        block = shared_block(
            ids.to(self.device),
            valid.to(self.device),
            start.to(self.device),
            torch.zeros((len(rows), 0), dtype=torch.long, device=self.device),
        )
        whole = len(rows) == self.last.shape[0]
        self.cache.forward(block, rows=None if whole else sub.to(self.device))
        rewards = self.cache.commit_rewards.float().cpu()  # [S, width]
        real = valid if self.pad is None else valid & (ids != self.pad)
        col = (torch.arange(width) * real).argmax(-1)  # [S] rightmost real non-pad column
        got = real.any(-1)
        picked = rewards.gather(1, col[:, None])[:, 0]
        self.last[sub] = torch.where(got, picked, self.last[sub])
        self.next_pos[sub] += valid.sum(-1)
        return self.last.clone()

    def repeat(self, n: int) -> None:
        """Each row becomes ``n`` rows (row i -> rows i*n ... i*n+n-1) sharing what it has read."""
        self.cache.repeat(n)
        self.next_pos = self.next_pos.repeat_interleave(n)
        self.last = self.last.repeat_interleave(n)

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices into the current rows, in order); the others' caches are dropped."""
        idx = torch.tensor(rows, dtype=torch.long)
        self.cache.keep(idx.to(self.device))
        self.next_pos, self.last = self.next_pos[idx], self.last[idx]


def reward_reader(p, slots: list | None = None) -> RewardReader | None:
    """A `RewardReader` of method parts ``p``'s guide over one row per prompt of the batch (or
    ``slots``, the prompt of each row), or None where the guide must be read whole: an RM with
    its own tokenizer, an encoder, or one whose probe did not choose the tree scorer."""
    d = p.decoder
    if not d.shared_tokenizer or d.scorer_name(p.s) != "tree":
        return None
    slots = list(p.rows) if slots is None else slots
    return RewardReader(d.rm, p.stats, len(slots), p.meter.cursors("rm", slots))
