"""Reward scorers: how a sequence RM reads a sequence (`rm_attention`), the tree-masked
shared-prefix scorer.

Scorers without a tree mask (expanded cache, full sequence) are in `argsfw.decoding.sequence_scorers`;
which one runs is decided by `argsfw.decoding.probe`. The slow reference scorer they are
checked against (by the tests and the probe) is `argsfw.decoding.reference_scorer`.

The reward of a sequence under a decoder RM is its scalar head applied to the hidden state of the
sequence's last token (what ``AutoModelForSequenceClassification`` returns for an unpadded
row that does not end in its pad token). Scorers call the RM's backbone and head directly so
they can read that hidden state at any position of a packed forward.

**The shared-prefix trick.** At each step the k candidates of a row differ only in their last
token. `RewardCache` keeps ONE KV cache of the committed prefix per row and feeds a *tree
block*: the tokens to commit (the prompt on the first step, the previously chosen token
after) followed by the k candidates, all in one row. A 4-D attention mask lets each candidate
see the prefix and itself only; candidates share one position id. After the forward the
candidate columns are cropped, so the cache holds O(L) keys, never O(k*L), and nothing is
copied or reordered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from argsfw.decoding.accounting import DecodeStats, RowCursors, cache_bytes, untracked
from argsfw.decoding.types import DecodeInputError


def rm_attention(rm) -> str:
    """``"causal"`` for a decoder classifier (a backbone and a ``score`` head read at the last
    token: Llama, OPT, GPT-2, Bloom ...), ``"bidirectional"`` for any other one-label sequence
    classifier (BERT, RoBERTa, DeBERTa ...: its own forward pools the whole sequence).

    Raises:
        DecodeInputError: more than one label, or no classification head at all.
    """
    name = type(rm).__name__
    if isinstance(getattr(rm, "score", None), torch.nn.Module) and isinstance(
        getattr(rm, getattr(rm, "base_model_prefix", ""), None), torch.nn.Module
    ):
        kind = "causal"
    elif name.endswith("ForSequenceClassification"):
        kind = "bidirectional"
    else:
        raise DecodeInputError(
            f"reward model {name} has no sequence-classification head; argsfw scores with an "
            "AutoModelForSequenceClassification of num_labels=1 (decoders such as Llama, OPT, GPT-2, "
            "or encoders such as BERT, RoBERTa, DeBERTa)"
        )
    labels = getattr(rm.config, "num_labels", 1)
    if labels != 1:
        raise DecodeInputError(
            f"reward model {name} has num_labels={labels}; a reward model gives one scalar: "
            "load it with num_labels=1 (AutoModelForSequenceClassification)"
        )
    return kind


def reward_parts(rm) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Split a decoder sequence classifier into ``(backbone, head)``: backbone hidden states [B, T, H] -> head -> [B, T, 1].

    Raises:
        DecodeInputError: when the model is not a one-label decoder classifier (see `rm_attention`).
    """
    if rm_attention(rm) != "causal":
        raise DecodeInputError(
            f"reward model {type(rm).__name__} is bidirectional: it has no prefix cache to "
            "score candidates against; only the full-sequence scorer (decode.scorer=full or auto) reads it"
        )
    return getattr(rm, rm.base_model_prefix), rm.score


def model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a model's first parameter."""
    p = next(model.parameters())
    return p.device, p.dtype


@dataclass
class TreeBlock:
    """New tokens of one RM forward, laid out as a tree over each row's cached prefix.

    ``ids``/``pos``/``valid`` [B, S]: token ids, position ids, real (not padding) tokens.
    ``attend`` [B, S, S]: block query i may attend block key j (the cached prefix is always
    visible to real tokens). The first ``n_commit`` columns are kept in the cache after the
    forward; the rest (candidate suffixes) are cropped. ``score_at`` [B, c]: block index of
    each candidate's last token, where its reward is read. ``suffixes`` (per row, per
    candidate: its token ids) when a candidate spans several columns; None when each column
    after the first ``n_commit`` is one candidate of one token.
    """

    ids: torch.Tensor
    pos: torch.Tensor
    valid: torch.Tensor
    attend: torch.Tensor
    n_commit: int
    score_at: torch.Tensor
    suffixes: list[list[list[int]]] | None = None


class RewardCache:
    """One KV cache of committed prefixes for a batch of rows, fed `TreeBlock`s.

    ``col_valid`` [B, C] marks which of the C cached columns are real tokens of each row:
    left padding and tokens invalidated by `invalidate` (the cross-tokenizer scorer's
    re-tokenized tails) stay in the cache as masked holes, so rows never need cropping one
    by one. ``reads`` (`RowCursors` of the rows' prompts) is told what every forward
    computes. After a forward, ``commit_rewards`` [S, n_commit] holds the head's value at each
    committed column of the rows that ran (the reward of the sequence ending there).
    """

    def __init__(self, rm, stats: DecodeStats, batch: int, reads: RowCursors | None = None):
        self.backbone, self.head = reward_parts(rm)
        self.device, self.dtype = model_device_dtype(rm)
        self.stats = stats
        # why: no config, so every layer is a plain full-attention DynamicLayer that `crop`s
        # exactly; the 4-D masks we pass are full attention anyway (sliding-window RMs are
        # limited to their window by the engine's context check).
        self.cache = DynamicCache()
        self.col_valid = torch.zeros((batch, 0), dtype=torch.bool, device=self.device)
        self.held: tuple[int, int] | None = (
            None  # (first column, count) of candidates kept for `adopt`
        )
        self.held_rows: torch.Tensor | None = None  # [B] rows whose candidates are held (None: all)
        self.reads = reads if reads is not None else untracked(batch)
        self.held_nodes: list[list[int] | None] = []  # per row: its held candidates' trie nodes
        self.commit_rewards: torch.Tensor | None = None

    @torch.inference_mode()
    def forward(
        self, block: TreeBlock, hold: bool = False, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run one block; returns the candidates' rewards [B, c] (float32) and commits the block's head.

        With ``hold=True`` the candidate columns stay in the cache until `adopt` keeps the
        chosen one (``block`` must then hold one token per candidate). With ``rows`` [S]
        (batch indices) the block holds those rows only and only they enter the forward; the
        other rows get masked hole columns, so a row that does not score costs no RM work.
        """
        nodes = self._track(block, rows)
        if rows is None:
            rewards, n_new = self._run(self.cache, self.col_valid, block)
            new_valid = block.valid[:, : block.n_commit]
        else:
            rows = rows.to(self.device)
            # why a gathered copy: a forward runs on whole cache rows; the copy reads the S rows'
            # prefix once, about what the forward's attention reads anyway
            sub = DynamicCache(
                ddp_cache_data=[(la.keys[rows], la.values[rows]) for la in self.cache.layers]
            )
            rewards, n_new = self._run(sub, self.col_valid[rows], block)
            self._scatter(sub, rows, n_new)
            new_valid = torch.zeros(
                (self.col_valid.shape[0], block.n_commit), dtype=torch.bool, device=self.device
            )
            new_valid[rows] = block.valid[:, : block.n_commit]
        drop = n_new - block.n_commit
        self.held_nodes = nodes if hold else []
        c_len = self.col_valid.shape[1]
        self.held = (c_len + block.n_commit, drop) if hold else None
        self.held_rows = None
        if hold and rows is not None:
            self.held_rows = torch.zeros(
                self.col_valid.shape[0], dtype=torch.bool, device=self.device
            )
            self.held_rows[rows] = True
        self.stats.rm_cache_bytes_peak = max(
            self.stats.rm_cache_bytes_peak, cache_bytes(self.cache)
        )
        if drop > 0 and not hold:
            self.cache.crop(-drop)
        self.col_valid = torch.cat([self.col_valid, new_valid], dim=1)
        return rewards

    def _track(self, block: TreeBlock, rows: torch.Tensor | None) -> list[list[int] | None]:
        """Tell ``reads`` what ``block`` computes; returns each batch row's candidate nodes (None: not in the block)."""
        self.reads.begin()
        ids, valid, n = block.ids.tolist(), block.valid.tolist(), block.n_commit
        batch = self.col_valid.shape[0]
        which = rows.tolist() if rows is not None else range(batch)
        nodes: list[list[int] | None] = [None] * batch
        for j, r in enumerate(which):
            if n:
                self.reads.read(r, [t for t, v in zip(ids[j][:n], valid[j][:n]) if v])
            if block.suffixes is None:  # one token per candidate
                nodes[r] = self.reads.fan(r, ids[j][n:])
            else:
                nodes[r] = [self.reads.branch(r, suf) for suf in block.suffixes[j]]
        return nodes

    def _run(self, cache, col_valid: torch.Tensor, block: TreeBlock) -> tuple[torch.Tensor, int]:
        """The backbone + head forward of ``block`` over ``cache``; returns (rewards [b, c], columns added)."""
        b, s = block.ids.shape
        c_len = col_valid.shape[1]
        allow = torch.cat(
            [col_valid[:, None, :].expand(b, s, c_len), block.attend], dim=-1
        )  # [B, S, C+S]
        allow[:, :, :c_len] &= block.valid[:, :, None]  # padding queries see only themselves
        mask = torch.zeros(allow.shape, dtype=self.dtype, device=self.device)
        mask.masked_fill_(~allow, torch.finfo(self.dtype).min)  # additive: works for eager and sdpa
        out = self.backbone(
            input_ids=block.ids,
            attention_mask=mask[:, None],  # [B, 1, S, C+S]
            position_ids=block.pos,
            cache=cache,
            use_cache=True,
        )
        hidden = out.last_hidden_state  # [B, S, H]
        picked = hidden.gather(
            1, block.score_at[..., None].expand(-1, -1, hidden.shape[-1])
        )  # [B, c, H]
        rewards = self.head(picked)[..., 0].float()  # [B, c]
        # why every committed column: a scalar head costs H multiply-adds per column, and a
        # reader may need the reward of the sequence ending at any of them (`HFReadout`)
        self.commit_rewards = self.head(hidden[:, : block.n_commit])[..., 0].float()
        self.stats.rm_forwards += 1
        self.stats.rm_tokens_in += block.ids.numel()
        return rewards, s

    def _scatter(self, sub, rows: torch.Tensor, n_new: int) -> None:
        """Append ``sub``'s last ``n_new`` columns to ``rows`` of the cache; the other rows get zero holes."""
        batch = self.col_valid.shape[0]
        pairs = []
        for i, layer in enumerate(sub.layers):
            out = []
            for name in ("keys", "values"):
                fresh = getattr(layer, name)[:, :, -n_new:]  # [S, heads, n_new, head_dim]
                grown = fresh.new_zeros((batch, *fresh.shape[1:]))
                grown[rows] = fresh
                if i < len(self.cache.layers) and self.cache.layers[i].is_initialized:
                    grown = torch.cat([getattr(self.cache.layers[i], name), grown], dim=-2)
                out.append(grown)
            pairs.append(tuple(out))
        if self.cache.layers and all(la.is_initialized for la in self.cache.layers):
            for layer, (k, v) in zip(self.cache.layers, pairs):
                layer.keys, layer.values = k, v
        else:  # first forward of the batch: nothing cached yet
            self.cache = DynamicCache(ddp_cache_data=pairs)

    @torch.inference_mode()
    def adopt(self, idx: torch.Tensor) -> None:
        """Keep held candidate ``idx`` [B] of each row as its next committed token; drop the other candidates."""
        start, n = self.held
        for r, (cand_nodes, i) in enumerate(zip(self.held_nodes, idx.tolist())):
            if cand_nodes is not None:
                self.reads.move(r, cand_nodes[i])
        self.held_nodes = []
        rows = torch.arange(idx.shape[0], device=self.device)
        idx = idx.to(self.device)  # rows not held (`held_rows`) copy a hole onto a hole
        for layer in self.cache.layers:
            # why: the chosen candidate's keys/values were already computed at the right position
            # against the right prefix; moving them into the first candidate slot (in place) and
            # cropping the rest keeps them without re-reading the token or copying the cache.
            # transformers has no "keep column j of row b" cache operation.
            for t in (layer.keys, layer.values):  # [B, heads, start + n, head_dim]
                t[:, :, start] = t[rows, :, start + idx]
        if n > 1:
            self.cache.crop(-(n - 1))
        adopted = (
            torch.ones_like(self.col_valid[:, :1])
            if self.held_rows is None
            else self.held_rows[:, None].clone()
        )
        self.col_valid = torch.cat([self.col_valid, adopted], dim=1)
        self.held = self.held_rows = None

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` [B'] of the batch."""
        rows = rows.to(self.device)
        self.cache.batch_select_indices(rows)
        self.col_valid = self.col_valid[rows]
        self.reads.keep(rows)
        if self.held_nodes:
            self.held_nodes = [self.held_nodes[i] for i in rows.tolist()]
        if self.held_rows is not None:
            self.held_rows = self.held_rows[rows]

    def repeat(self, n: int) -> None:
        """Each row becomes ``n`` rows (row i -> rows i*n ... i*n+n-1): a prompt's cache shared by its samples."""
        self.cache.batch_repeat_interleave(n)
        self.col_valid = self.col_valid.repeat_interleave(n, dim=0)
        self.reads.repeat(n)

    def invalidate(self, row: int, cols: list[int]) -> None:
        """Mask cached columns ``cols`` of ``row`` out of all later attention."""
        if cols:
            self.col_valid[row, torch.tensor(cols, device=self.device)] = False


def shared_block(
    pending: torch.Tensor, pending_valid: torch.Tensor, start: torch.Tensor, cands: torch.Tensor
) -> TreeBlock:
    """Tree block for a shared tokenizer: commit ``pending`` [B, P] (left padded), score ``cands`` [B, c].

    ``start`` [B] is each row's next position id. Pending tokens get consecutive positions;
    every candidate gets the position right after them and sees the prefix, the pending
    tokens and itself.
    """
    b, p = pending.shape
    c = cands.shape[1]
    dev = cands.device
    pend_pos = start[:, None] + pending_valid.long().cumsum(-1) - 1  # [B, P]
    cand_pos = (start + pending_valid.sum(-1))[:, None].expand(b, c)  # [B, c]
    eye_p = torch.eye(p, dtype=torch.bool, device=dev)
    causal = torch.ones(p, p, dtype=torch.bool, device=dev).tril()
    pp = (causal[None] & pending_valid[:, None, :]) | eye_p[None]  # [B, P, P]
    top = torch.cat([pp, torch.zeros(b, p, c, dtype=torch.bool, device=dev)], dim=-1)
    bottom = torch.cat(
        [
            pending_valid[:, None, :].expand(b, c, p),
            torch.eye(c, dtype=torch.bool, device=dev)[None].expand(b, c, c),
        ],
        dim=-1,
    )
    return TreeBlock(
        ids=torch.cat([pending, cands], dim=1),
        pos=torch.cat([pend_pos.clamp(min=0), cand_pos], dim=1),
        valid=torch.cat([pending_valid, torch.ones(b, c, dtype=torch.bool, device=dev)], dim=1),
        attend=torch.cat([top, bottom], dim=1),
        n_commit=p,
        score_at=(p + torch.arange(c, device=dev))[None].expand(b, c),
    )


class SharedTokenizerScorer:
    """Cached scorer for an RM that shares the policy's tokenizer (the fast path).

    One RM forward per step: step one reads the prompt and the k candidates together; after
    that the block is the k candidates alone, because the chosen candidate's keys/values are
    adopted from the previous step's forward (`RewardCache.adopt`). The RM reads every token
    once. In chunked mode (``chunk_size < k``, greedy-large) candidates are scored a chunk per
    forward and the chosen token is re-read with the first chunk of the next step instead.
    """

    def __init__(self, rm, stats: DecodeStats, reads: RowCursors | None = None):
        self.rm, self.stats, self.reads = rm, stats, reads
        self.device, _ = model_device_dtype(rm)

    def start(
        self, ids: torch.Tensor, mask: torch.Tensor, prompts: list[list[int]] | None = None
    ) -> None:
        """Begin a batch: the left-padded prompts ``ids``/``mask`` [B, T] are committed with the first scoring."""
        self.cache = RewardCache(self.rm, self.stats, ids.shape[0], self.reads)
        self.pending = ids.to(self.device)  # [B, P] tokens to commit with the next forward
        self.pending_valid = mask.to(self.device).bool()
        self.next_pos = torch.zeros(ids.shape[0], dtype=torch.long, device=self.device)
        self.held_cands: torch.Tensor | None = None  # [B, k] candidates whose columns are held
        self.committed: tuple | None = None

    def score(self, cands: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Rewards [B, k] (float32, on the candidates' device) of appending each of ``cands`` [B, k].

        Sets ``committed``: ``(ids [B, P], valid [B, P], rewards [B, P])`` of the tokens this
        call committed ahead of the candidates, or None when it committed none.
        """
        out_dev = cands.device
        cands = cands.to(self.device)
        size = chunk_size or cands.shape[1]
        hold = size >= cands.shape[1]
        rewards = []
        self.committed = None
        for chunk in cands.split(size, dim=1):
            block = shared_block(self.pending, self.pending_valid, self.next_pos, chunk)
            rewards.append(self.cache.forward(block, hold=hold))
            if self.pending.shape[1]:
                self.committed = (self.pending, self.pending_valid, self.cache.commit_rewards)
            self.next_pos = self.next_pos + self.pending_valid.sum(-1)
            self.pending = self.pending[:, :0]
            self.pending_valid = self.pending_valid[:, :0]
        self.held_cands = cands if hold else None
        return torch.cat(rewards, dim=1).to(out_dev)

    def commit(self, chosen: torch.Tensor, sequences: list[list[int]] | None = None) -> None:
        """Append the chosen tokens [B] (each one of the last scored candidates) to every row."""
        chosen = chosen.to(self.device)
        if self.held_cands is not None:
            idx = (self.held_cands == chosen[:, None]).int().argmax(-1)  # top-k ids are distinct
            self.cache.adopt(idx)
            self.next_pos = self.next_pos + 1
            self.held_cands = None
            return
        self.pending = torch.cat([self.pending, chosen[:, None]], dim=1)
        self.pending_valid = torch.cat(
            [self.pending_valid, torch.ones_like(chosen[:, None], dtype=torch.bool)], dim=1
        )

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` [B'] of the batch."""
        rows = rows.to(self.device)
        self.cache.keep(rows)
        self.pending, self.pending_valid, self.next_pos = (
            self.pending[rows],
            self.pending_valid[rows],
            self.next_pos[rows],
        )
        if self.held_cands is not None:
            self.held_cands = self.held_cands[rows]
