"""The policy (LLM) side of decoding: prefill once, then one cached forward per new token.

A batch of prompts is left-padded; each row's position ids count only its real tokens, so a
padded row sees exactly the positions it would see alone. Rows that finish are dropped from
the batch (and from the KV cache), so they stop costing compute.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from argsfw.decoding.accounting import DecodeStats, RowCursors, untracked


def context_length(config) -> int | None:
    """The longest sequence a model config supports (``max_position_embeddings`` or kin), or None."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def left_pad(
    rows: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into ``ids`` [B, T] and ``mask`` [B, T] (1 = real token), padded on the left."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


class PolicyState:
    """A batch of rows decoding with the policy's KV cache.

    Shapes: ``mask`` [B, C] marks the real tokens among the C cached positions of each row;
    ``next_pos`` [B] is each row's next position id. Logits are returned as float32 [B, V].
    ``role`` names the counters the forwards go to: ``"llm"`` (policy) or ``"rm"`` (a
    token-level reward model stepped in lock-step with the policy). ``model`` may be a bare
    backbone (``head=False``): then `prefill`/`step` return last hidden states [B, H] in the
    model's dtype instead of logits. ``reads`` (`RowCursors` of the rows' prompts) is told
    every position each forward computes (default: a private ledger).

    The cache primitives other methods build on: `repeat` (expand each row's prompt cache to
    N samples), `keep` (select or drop rows), `step` / `extend` (extend each row by new tokens).
    """

    def __init__(
        self,
        model,
        ids: torch.Tensor,
        mask: torch.Tensor,
        stats: DecodeStats,
        role: str = "llm",
        head: bool = True,
        reads: RowCursors | None = None,
    ):
        self.model, self.head = model, head
        self.stats = stats
        self.role = role
        self.ids, self.mask = ids, mask  # [B, T] prompt, left padded
        self.cache = DynamicCache(config=model.config)
        self.next_pos = mask.sum(-1)  # [B]
        self.reads = reads if reads is not None else untracked(ids.shape[0])

    @torch.inference_mode()
    def prefill(self) -> torch.Tensor:
        """Read the prompts once; returns next-token logits [B, V] (float32)."""
        pos = (self.mask.cumsum(-1) - 1).clamp(min=0)  # [B, T] real tokens at 0..n-1
        return self._forward(self.ids, pos, self.mask.bool())

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` [B] to every row; returns the next logits [B, V] (float32)."""
        tokens = tokens.to(self.mask.device)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        pos = self.next_pos[:, None]  # [B, 1]
        self.next_pos = self.next_pos + 1
        return self._forward(tokens[:, None], pos, None)

    @torch.inference_mode()
    def extend(self, tokens: list[list[int]]) -> torch.Tensor:
        """Append ``tokens[b]`` (one or more ids) to row b in one forward; returns the next logits [B, V].

        The block is left padded; its padding stays in the cache as masked holes, as the
        prompts' left padding does, so rows of different lengths need no cropping.
        """
        if any(not t for t in tokens):
            raise ValueError("PolicyState.extend needs at least one token per row")
        dev = self.mask.device
        width = max(len(t) for t in tokens)
        ids = torch.zeros((len(tokens), width), dtype=torch.long)
        valid = torch.zeros((len(tokens), width), dtype=torch.bool)
        for b, t in enumerate(tokens):
            ids[b, width - len(t) :] = torch.tensor(t, dtype=torch.long)
            valid[b, width - len(t) :] = True
        ids, valid = ids.to(dev), valid.to(dev)
        pos = (self.next_pos[:, None] + valid.long().cumsum(-1) - 1).clamp(min=0)  # [B, S]
        self.mask = torch.cat([self.mask, valid.to(self.mask.dtype)], dim=1)
        self.next_pos = self.next_pos + valid.sum(-1)
        return self._forward(ids, pos, valid)

    def _forward(
        self, ids: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor | None
    ) -> torch.Tensor:
        """One cached forward of block ``ids`` [B, S] (``valid``: its real tokens, None: all)."""
        self.reads.begin()
        if valid is None and ids.shape[1] == 1:  # a step: one token per row
            self.reads.step(ids[:, 0].tolist())
        else:
            rows = ids.tolist()
            keep = valid.tolist() if valid is not None else [[True] * ids.shape[1]] * len(rows)
            for b, row in enumerate(rows):
                self.reads.read(b, [t for t, k in zip(row, keep[b]) if k])
        out = self.model(
            input_ids=ids,
            attention_mask=self.mask,
            position_ids=pos,
            cache=self.cache,
            use_cache=True,
            # why: only the last position's logits are needed
            **({"logits_to_keep": 1} if self.head else {}),
        )
        if self.role == "rm":
            self.stats.rm_forwards += 1
            self.stats.rm_tokens_in += ids.numel()
        else:
            self.stats.llm_forwards += 1
            self.stats.llm_tokens_in += ids.numel()
        return out.logits[:, -1].float() if self.head else out.last_hidden_state[:, -1]

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` [B'] (indices into the current batch), dropping finished ones."""
        rows = rows.to(self.mask.device)
        self.cache.batch_select_indices(rows)
        self.ids, self.mask = self.ids[rows], self.mask[rows]
        self.next_pos = self.next_pos[rows]
        self.reads.keep(rows)

    def repeat(self, n: int) -> None:
        """Repeat every row ``n`` times in place (row i becomes rows i*n ... i*n+n-1), cache included."""
        self.cache.batch_repeat_interleave(n)
        self.ids = self.ids.repeat_interleave(n, dim=0)
        self.mask = self.mask.repeat_interleave(n, dim=0)
        self.next_pos = self.next_pos.repeat_interleave(n, dim=0)
        self.reads.repeat(n)
