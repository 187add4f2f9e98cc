"""Scoring with a reward model whose tokenizer differs from the policy's.

The RM must see exactly ``rm_tokenizer(policy_tokenizer.decode(ids, skip_special_tokens=True))``
for every candidate sequence ``ids`` (the RM tokenizer's own special tokens added as it does by
default). Re-tokenizing text is not incremental: appending a token can change how the end of
the text splits (BPE merges, a half-written UTF-8 character completing). So at each step, per
row, `CrossTokenizerScorer`:

1. re-tokenizes the k candidate texts in full (``R_v`` for each candidate v);
2. keeps the longest cached RM prefix that is still a prefix of every ``R_v`` and masks the
   rest of the row's cache out (holes, never copies);
3. commits the part all ``R_v`` share and scores each candidate's remaining suffix in one
   tree-masked forward (`TreeBlock`), exactly like the shared-tokenizer path.

Cost per step and row: k detokenizations and k re-tokenizations of the whole sequence
(O(k*L) characters of Rust tokenizer work plus O(k*L) Python prefix comparisons), and RM work
for the committed tokens plus the k suffixes (usually 1-2 tokens each). Where the tail of the
re-tokenized text changes, those few tokens are re-read. The RM cache grows by the masked
holes (a few columns per re-tokenized tail); it is released with the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from argsfw.decoding.accounting import DecodeStats, RowCursors
from argsfw.decoding.scoring import RewardCache, TreeBlock, model_device_dtype
from argsfw.decoding.types import PromptTooLongError


def retokenizer(policy_tokenizer, rm_tokenizer) -> Callable[[list[list[int]]], list[list[int]]]:
    """Return ``f(batch of policy id lists) -> batch of RM id lists`` (decode, then encode with RM specials)."""

    def convert(batch: list[list[int]]) -> list[list[int]]:
        texts = policy_tokenizer.batch_decode(batch, skip_special_tokens=True)
        return [list(x) for x in rm_tokenizer(texts).input_ids]

    return convert


def cut_retokenizer(
    policy_tokenizer, rm_tokenizer, max_len: int | None, stats: DecodeStats
) -> Callable[[list[list[int]]], list[list[int]]]:
    """`retokenizer`, then texts over the RM's context `max_len` cut from the left (its special
    tokens kept), each cut counted in ``stats.rm_truncated``. For scorers that re-read whole
    sequences (`argsfw.decoding.sequence_scorers.FullScorer`, best-of-n)."""
    from argsfw.models import cut_left, special_wrap

    convert = retokenizer(policy_tokenizer, rm_tokenizer)
    wrap = special_wrap(rm_tokenizer)

    def cut(batch: list[list[int]]) -> list[list[int]]:
        out = convert(batch)
        if max_len is None:
            return out
        stats.rm_truncated += sum(len(r) > max_len for r in out)
        return [cut_left(r, max_len, wrap) for r in out]

    return cut


def _lcp(a: list[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def split_row(cached: list[int], rm_ids: list[list[int]]) -> tuple[int, int]:
    """``(base, shared)`` for one row's k candidate RM sequences ``rm_ids``.

    ``shared``: the length of the prefix all candidates share, leaving every candidate at
    least one token to read its reward at. ``base``: how much of the ``cached`` RM prefix is
    still a prefix of them (the rest must be masked out of the cache).
    """
    shared = min(len(r) for r in rm_ids) - 1
    for r in rm_ids[1:]:
        shared = _lcp(rm_ids[0], r, shared)
    return _lcp(cached, rm_ids[0], shared), shared


def check_rm_lengths(rm_ids: list[list[int]], max_len: int | None, step: int, row: int) -> None:
    """Raise `PromptTooLongError` when a candidate re-tokenizes past the RM's context or to nothing."""
    longest = max(len(r) for r in rm_ids)
    if max_len is not None and longest > max_len:
        raise PromptTooLongError(
            f"step {step}: row {row} re-tokenizes to {longest} reward-model tokens, over its context of {max_len}"
        )
    if min(len(r) for r in rm_ids) == 0:
        raise PromptTooLongError(
            f"step {step}: the reward model's tokenizer gives no tokens for row {row}'s text"
        )


def list_block(
    pendings: list[list[int]], starts: list[int], suffixes: list[list[list[int]]], device
) -> TreeBlock:
    """Tree block from Python lists: per row commit ``pendings[b]`` then score each of ``suffixes[b]``.

    Pending tokens are left padded to a common width and get positions ``starts[b] + i``;
    each suffix continues right after the row's pending tokens and attends to them and to
    its own earlier tokens only.
    """
    b_n = len(pendings)
    c = len(suffixes[0])
    p = max((len(x) for x in pendings), default=0)
    s = p + max(sum(len(x) for x in row) for row in suffixes)
    ids = torch.zeros((b_n, s), dtype=torch.long)
    pos = torch.zeros((b_n, s), dtype=torch.long)
    valid = torch.zeros((b_n, s), dtype=torch.bool)
    attend = torch.zeros((b_n, s, s), dtype=torch.bool)
    score_at = torch.zeros((b_n, c), dtype=torch.long)
    for b in range(b_n):
        pend, off = pendings[b], p - len(pendings[b])
        if pend:
            ids[b, off:p] = torch.tensor(pend)
            pos[b, off:p] = starts[b] + torch.arange(len(pend))
            valid[b, off:p] = True
            attend[b, off:p, off:p] = torch.ones(len(pend), len(pend), dtype=torch.bool).tril()
        col = p
        for v, suf in enumerate(suffixes[b]):
            n = len(suf)
            ids[b, col : col + n] = torch.tensor(suf)
            pos[b, col : col + n] = starts[b] + len(pend) + torch.arange(n)
            valid[b, col : col + n] = True
            attend[b, col : col + n, off:p] = True
            attend[b, col : col + n, col : col + n] = torch.ones(n, n, dtype=torch.bool).tril()
            score_at[b, v] = col + n - 1
            col += n
    idx = torch.arange(s)
    attend[:, idx, idx] |= ~valid  # padding queries attend themselves only
    return TreeBlock(
        ids=ids.to(device),
        pos=pos.to(device),
        valid=valid.to(device),
        attend=attend.to(device),
        n_commit=p,
        score_at=score_at.to(device),
        suffixes=suffixes,
    )


class CrossTokenizerScorer:
    """Cached scorer for an RM with its own tokenizer; same interface as `SharedTokenizerScorer`."""

    def __init__(
        self,
        rm,
        policy_tokenizer,
        rm_tokenizer,
        stats: DecodeStats,
        max_len: int | None = None,
        reads: RowCursors | None = None,
    ):
        self.rm, self.stats, self.max_len, self.reads = rm, stats, max_len, reads
        self.device, _ = model_device_dtype(rm)
        self.convert = retokenizer(policy_tokenizer, rm_tokenizer)

    def start(self, ids: torch.Tensor, mask: torch.Tensor, prompts: list[list[int]]) -> None:
        """Begin a batch of policy-token ``prompts`` (``ids``/``mask`` are unused: the RM reads its own tokens)."""
        self.seqs = [list(p) for p in prompts]
        self.cached: list[list[int]] = [[] for _ in prompts]  # RM ids whose keys are in the cache
        self.cols: list[list[int]] = [[] for _ in prompts]  # their cache columns
        self.cache = RewardCache(self.rm, self.stats, len(prompts), self.reads)
        self.step = 0

    def score(self, cands: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Rewards [B, k] (float32) of appending each of ``cands`` [B, k] to each row's sequence."""
        self.step += 1
        cand_lists = cands.tolist()
        k = len(cand_lists[0])
        pendings, starts, suffixes = [], [], []
        for b, seq in enumerate(self.seqs):
            rm_ids = self.convert([seq + [v] for v in cand_lists[b]])  # k lists
            check_rm_lengths(rm_ids, self.max_len, self.step, b)
            base, shared = split_row(self.cached[b], rm_ids)
            self.cache.invalidate(b, self.cols[b][base:])
            self.cache.reads.rewind(b, base)
            del self.cached[b][base:], self.cols[b][base:]
            pendings.append(rm_ids[0][base:shared])
            starts.append(base)
            suffixes.append([r[shared:] for r in rm_ids])
        size = chunk_size or k
        rewards = []
        for lo in range(0, k, size):
            c_before = self.cache.col_valid.shape[1]
            block = list_block(
                pendings, starts, [row[lo : lo + size] for row in suffixes], self.device
            )
            rewards.append(self.cache.forward(block))
            for b, pend in enumerate(
                pendings
            ):  # pending tokens are now cached (left padded in the block)
                first = c_before + block.n_commit - len(pend)
                self.cached[b].extend(pend)
                self.cols[b].extend(range(first, first + len(pend)))
                starts[b] += len(pend)
            pendings = [[] for _ in pendings]
        return torch.cat(rewards, dim=1).to(cands.device)

    def commit(self, chosen: torch.Tensor, sequences: list[list[int]] | None = None) -> None:
        """Append the chosen policy tokens [B] to each row's sequence."""
        for seq, tok in zip(self.seqs, chosen.tolist()):
            seq.append(tok)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` [B'] of the batch."""
        idx = rows.tolist()
        self.cache.keep(rows)
        self.seqs = [self.seqs[i] for i in idx]
        self.cached = [self.cached[i] for i in idx]
        self.cols = [self.cols[i] for i in idx]
