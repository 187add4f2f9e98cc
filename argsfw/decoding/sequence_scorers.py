"""Scorers that need no tree mask: the expanded-cache scorer and the full-sequence scorer.

The tree scorer (`argsfw.decoding.scoring`) packs a row's k candidates into one row under a
4-D attention mask. Some reward models cannot take that mask (ALiBi models such as Bloom build
their own bias from a 2-D mask) or have no causal cache at all (encoders: BERT, RoBERTa,
DeBERTa). `argsfw.decoding.probe` picks one of these when the tree scorer does not reproduce
full-sequence rewards:

* `ExpandedScorer`: one RM cache of each row's committed prefix, as the tree scorer keeps;
  to score, the cache is repeated k times (``batch_repeat_interleave``) and every candidate
  is a row of its own, read with an ordinary 2-D padding mask. The chosen candidate's row is
  kept as the next step's cache. Works for any decoder whose cache supports repeat/select;
  costs k copies of the cache per step.
* `FullScorer`: no cache. Each step the RM re-reads every candidate's whole sequence, the k
  candidates of all rows in one right-padded batched forward. Works for any one-label
  sequence classifier (encoders read through their own forward, which pools the sequence);
  costs O(k * L) RM tokens per step.

Both take RM token lists from a converter (identity for a shared tokenizer, else
re-tokenization, see `argsfw.decoding.cross_tokenizer`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from transformers import DynamicCache

from argsfw.decoding.accounting import DecodeStats, RowCursors, cache_bytes, untracked
from argsfw.decoding.cross_tokenizer import check_rm_lengths, split_row
from argsfw.decoding.scoring import model_device_dtype, reward_parts, rm_attention

Converter = Callable[[list[list[int]]], list[list[int]]]


def _same_ids(batch: list[list[int]]) -> list[list[int]]:
    return [list(x) for x in batch]


def _right_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(seqs), width), dtype=torch.bool)
    for j, s in enumerate(seqs):
        ids[j, : len(s)] = torch.tensor(s, dtype=torch.long)
        valid[j, : len(s)] = True
    return ids.to(device), valid.to(device)


@torch.inference_mode()
def sequence_rewards(
    rm,
    seqs: list[list[int]],
    stats: DecodeStats,
    batch_size: int = 8,
    pad_id: int | None = None,
    reads: RowCursors | None = None,
    rows: list[int] | None = None,
) -> torch.Tensor:
    """Rewards [N] (float32, CPU) of whole RM-token sequences, scored in right-padded batches.

    A decoder's reward is read where its own Hugging Face forward reads it: at each row's
    rightmost token that is not ``config.pad_token_id`` (its last token when the RM has no pad
    id), so a sequence ending in EOS == pad is read before the EOS; an encoder's is its own
    forward's logits under the padding mask. ``reads`` is told each whole read, sequence i as
    its row ``rows[i]`` (default i); an encoder's positions attend the whole sequence.
    """
    causal = rm_attention(rm) == "causal"
    device, _ = model_device_dtype(rm)
    rm_pad = getattr(rm.config, "pad_token_id", None)
    if pad_id is None:
        pad_id = rm_pad or 0
    rows = list(range(len(seqs))) if rows is None else rows
    out = []
    for i in range(0, len(seqs), batch_size):
        if reads is not None:
            reads.begin()
            for r, seq in zip(rows[i : i + batch_size], seqs[i : i + batch_size]):
                if causal:
                    reads.read_whole(r, seq)
                else:
                    reads.count(r, len(seq), len(seq) ** 2)
        ids, valid = _right_pad(seqs[i : i + batch_size], pad_id, device)
        mask = valid.long()
        if causal:
            backbone, head = reward_parts(rm)
            # why no position ids: right padding leaves every row's positions at 0..n-1 by default,
            # and not every backbone takes them (Bloom's ALiBi reads the mask instead)
            hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state  # [b, T, H]
            real = valid if rm_pad is None else valid & (ids != rm_pad)  # [b, T]
            pos = torch.arange(ids.shape[1], device=device)
            last = (pos * real).argmax(-1)  # [b] rightmost real non-pad token (0 if none)
            picked = hidden[torch.arange(ids.shape[0], device=device), last]  # [b, H]
            out.append(head(picked)[:, 0].float().cpu())
        else:
            out.append(rm(input_ids=ids, attention_mask=mask).logits[:, 0].float().cpu())
        stats.rm_forwards += 1
        stats.rm_tokens_in += ids.numel()
    return torch.cat(out)


class FullScorer:
    """No cache: every step the RM re-reads each candidate's whole sequence (same interface as the tree scorers).

    ``to_rm_ids`` maps a batch of policy id lists to RM id lists (it may cut over-long texts,
    see `argsfw.decoding.cross_tokenizer.cut_retokenizer`).
    """

    def __init__(
        self,
        rm,
        stats: DecodeStats,
        to_rm_ids: Converter | None = None,
        reads: RowCursors | None = None,
    ):
        self.rm, self.stats, self.reads = rm, stats, reads
        self.to_rm_ids = to_rm_ids or _same_ids

    def start(self, ids: torch.Tensor, mask: torch.Tensor, prompts: list[list[int]]) -> None:
        """Begin a batch of policy-token ``prompts`` (``ids``/``mask`` unused)."""
        self.seqs = [list(p) for p in prompts]
        if self.reads is None:
            self.reads = untracked(len(prompts))

    def score(self, cands: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Rewards [B, k] (float32) of appending each of ``cands`` [B, k]; ``chunk_size`` candidates per row per forward."""
        rows = cands.tolist()
        k = len(rows[0])
        rm_ids = self.to_rm_ids([seq + [v] for seq, row in zip(self.seqs, rows) for v in row])
        per_forward = (chunk_size or k) * len(rows)
        owner = [b for b in range(len(rows)) for _ in range(k)]
        rewards = sequence_rewards(
            self.rm, rm_ids, self.stats, per_forward, reads=self.reads, rows=owner
        )
        return rewards.view(len(rows), k).to(cands.device)

    def commit(self, chosen: torch.Tensor, sequences=None) -> None:
        """Append the chosen tokens [B] to every row."""
        for seq, tok in zip(self.seqs, chosen.tolist()):
            seq.append(tok)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` [B'] of the batch."""
        self.seqs = [self.seqs[i] for i in rows.tolist()]
        self.reads.keep(rows)


class ExpandedScorer:
    """A prefix cache per row, repeated to the k candidates for each scoring forward.

    Per row it keeps the RM ids whose keys are cached (``cached``) and their cache columns
    (``cols``); columns of tokens a re-tokenization changed, and right padding of shorter
    candidate suffixes, stay as masked holes (``col_valid`` [B, C]). Positions count real
    tokens only, so holes do not shift them.
    """

    def __init__(
        self,
        rm,
        stats: DecodeStats,
        to_rm_ids: Converter | None = None,
        max_len: int | None = None,
        reads: RowCursors | None = None,
    ):
        self.backbone, self.head = reward_parts(rm)
        self.device, _ = model_device_dtype(rm)
        self.stats, self.max_len, self.given_reads = stats, max_len, reads
        self.shared = to_rm_ids is None  # policy ids are RM ids: candidates differ in one token
        self.to_rm_ids = to_rm_ids or _same_ids
        self.takes_pos = "position_ids" in inspect.signature(self.backbone.forward).parameters

    def start(self, ids: torch.Tensor, mask: torch.Tensor, prompts: list[list[int]]) -> None:
        """Begin a batch of policy-token ``prompts`` (``ids``/``mask`` unused)."""
        n = len(prompts)
        self.seqs = [list(p) for p in prompts]
        self.cached: list[list[int]] = [[] for _ in range(n)]
        self.cols: list[list[int]] = [[] for _ in range(n)]
        self.cache = DynamicCache()
        self.col_valid = torch.zeros((n, 0), dtype=torch.bool, device=self.device)
        self.held = None  # (rows' candidates, suffixes, expanded-row group per live row, valid)
        self.step = 0
        self.reads = self.given_reads if self.given_reads is not None else untracked(n)
        self.held_nodes: list[list[int]] = []

    def _plan(self, rows: list[list[int]]) -> tuple[list[list[int]], list[list[list[int]]]]:
        """Per row: RM tokens to commit before scoring, and each candidate's suffix after them."""
        pending, suffixes = [], []
        for b, (seq, row) in enumerate(zip(self.seqs, rows)):
            if self.shared:
                pending.append(seq[len(self.cached[b]) :])
                suffixes.append([[v] for v in row])
                continue
            rm_ids = self.to_rm_ids([seq + [v] for v in row])
            check_rm_lengths(rm_ids, self.max_len, self.step, b)
            base, shared = split_row(self.cached[b], rm_ids)
            if base < len(self.cached[b]):  # a re-tokenized tail: mask its old columns out
                self.col_valid[b, torch.tensor(self.cols[b][base:], device=self.device)] = False
                del self.cached[b][base:], self.cols[b][base:]
                self.reads.rewind(b, base)
            pending.append(rm_ids[0][base:shared])
            suffixes.append([r[shared:] for r in rm_ids])
        return pending, suffixes

    def _forward(
        self, ids: torch.Tensor, valid: torch.Tensor, pos: torch.Tensor, cols: torch.Tensor
    ):
        mask = torch.cat([cols, valid], dim=1).long()  # [b, C + S]
        extra = {"position_ids": pos} if self.takes_pos else {}
        out = self.backbone(
            input_ids=ids, attention_mask=mask, cache=self.cache, use_cache=True, **extra
        )
        self.stats.rm_forwards += 1
        self.stats.rm_tokens_in += ids.numel()
        self.stats.rm_cache_bytes_peak = max(
            self.stats.rm_cache_bytes_peak, cache_bytes(self.cache)
        )
        return out.last_hidden_state  # [b, S, H]

    def _commit(self, pending: list[list[int]]) -> None:
        """Read every row's pending tokens (left padded) into the cache, unexpanded."""
        width = max(len(p) for p in pending)
        ids = torch.zeros((len(pending), width), dtype=torch.long)
        valid = torch.zeros((len(pending), width), dtype=torch.bool)
        pos = torch.zeros((len(pending), width), dtype=torch.long)
        c0 = self.col_valid.shape[1]
        self.reads.begin()
        for b, p in enumerate(pending):
            self.reads.read(b, p)
            off = width - len(p)
            if p:
                ids[b, off:] = torch.tensor(p)
                valid[b, off:] = True
                pos[b, off:] = len(self.cached[b]) + torch.arange(len(p))
            self.cached[b].extend(p)
            self.cols[b].extend(range(c0 + off, c0 + width))
        valid = valid.to(self.device)
        self._forward(ids.to(self.device), valid, pos.to(self.device), self.col_valid)
        self.col_valid = torch.cat([self.col_valid, valid], dim=1)

    def _score_chunk(self, suffixes: list[list[list[int]]], hold: bool) -> torch.Tensor:
        """Rewards [B, c] of each row's c candidate suffixes, one expanded row per candidate."""
        b_n, c = len(suffixes), len(suffixes[0])
        flat = [s for row in suffixes for s in row]
        ids, valid = _right_pad(flat, 0, self.device)  # [B*c, S]
        start = torch.tensor([len(x) for x in self.cached], device=self.device)
        pos = start.repeat_interleave(c)[:, None] + torch.arange(ids.shape[1], device=self.device)
        self.cache.batch_repeat_interleave(c)
        self.reads.begin()
        nodes = [[self.reads.branch(b, suf) for suf in row] for b, row in enumerate(suffixes)]
        hidden = self._forward(ids, valid, pos, self.col_valid.repeat_interleave(c, dim=0))
        last = valid.sum(-1) - 1
        picked = hidden[torch.arange(ids.shape[0], device=self.device), last]  # [B*c, H]
        rewards = self.head(picked)[:, 0].float().view(b_n, c)
        if hold:  # the chosen candidate's row becomes the next cache (see `commit`)
            self.held = (suffixes, list(range(b_n)), c, valid)
            self.held_nodes = nodes
        else:
            self.cache.crop(-ids.shape[1])  # drop the candidate columns again
            self.cache.batch_select_indices(torch.arange(b_n, device=self.device) * c)
        return rewards

    @torch.inference_mode()
    def score(self, cands: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Rewards [B, k] (float32, on the candidates' device) of appending each of ``cands`` [B, k]."""
        self.step += 1
        rows = cands.tolist()
        k = len(rows[0])
        pending, suffixes = self._plan(rows)
        if any(pending):
            self._commit(pending)
        size = chunk_size or k
        self.rows = rows
        out = [
            self._score_chunk([s[lo : lo + size] for s in suffixes], hold=size >= k)
            for lo in range(0, k, size)
        ]
        return torch.cat(out, dim=1).to(cands.device)

    @torch.inference_mode()
    def commit(self, chosen: torch.Tensor, sequences=None) -> None:
        """Append the chosen tokens [B]; a held expanded cache keeps the chosen candidates' rows."""
        tokens = chosen.tolist()
        for seq, tok in zip(self.seqs, tokens):
            seq.append(tok)
        if self.held is None:
            return
        suffixes, groups, c, valid = self.held
        idx = [self.rows[g].index(t) for g, t in zip(groups, tokens)]  # top-k ids are distinct
        flat = torch.tensor([g * c + i for g, i in zip(groups, idx)], device=self.device)
        c0 = self.col_valid.shape[1]
        self.cache.batch_select_indices(flat)
        self.col_valid = torch.cat([self.col_valid, valid[flat]], dim=1)
        for b, (g, i) in enumerate(zip(groups, idx)):
            suf = suffixes[g][i]
            self.cached[b].extend(suf)
            self.cols[b].extend(range(c0, c0 + len(suf)))
            self.reads.move(b, self.held_nodes[g][i])
        self.held = None

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` [B'] of the batch."""
        idx = rows.tolist()
        self.seqs = [self.seqs[i] for i in idx]
        self.cached = [self.cached[i] for i in idx]
        self.cols = [self.cols[i] for i in idx]
        self.col_valid = self.col_valid[rows.to(self.device)]
        self.reads.keep(idx)
        if self.held is not None:  # the expanded cache is narrowed at commit
            s, groups, c, valid = self.held
            self.held = (s, [groups[i] for i in idx], c, valid)
        else:
            self.cache.batch_select_indices(rows.to(self.device))
