"""Read a candidate's reward where the reward model's own Hugging Face forward reads it.

``AutoModelForSequenceClassification`` (decoders: Llama, OPT, GPT-2 ...) reads a sequence's
reward at its rightmost token that is not ``config.pad_token_id``. A sequence that ends in
the pad id is therefore read at the last token before it, and that is how such RMs are
trained and read (argsfw's RM stage and evaluate, TRL). Real models often set
``pad_token_id == eos_token_id`` (SmolLM2: ``<|im_end|>``), so an EOS candidate is worth the
reward of the sequence *without* it, not the head's value at the EOS position.

The cached scorers (`argsfw.decoding.scoring`, `argsfw.decoding.sequence_scorers`,
`argsfw.decoding.gated`) read every candidate at its own position, which is right for every
other token. `HFReadout` wraps any of them and replaces the reward of each candidate equal
to the pad id with the reward of the row's sequence so far: under causal attention the
hidden state at a token does not depend on what follows, so that is the reward of the last
committed token that is not the pad id. The wrapper keeps it per row from the scorers'
own outputs: the chosen candidate's reward is the reward of the new prefix, and the tokens a
forward committed ahead of the candidates (the prompt, a gated row's deferred tokens) come
with their rewards (``inner.committed``). Only a scorer that gives neither leaves it
unknown; then the row is read once with the RM's own forward (a re-read the ledger counts).
"""

from __future__ import annotations

import torch

from argsfw.decoding.accounting import DecodeStats, RowCursors, untracked
from argsfw.decoding.scoring import model_device_dtype


class HFReadout:
    """A scorer wrapper: candidates equal to ``pad_id`` get the reward of their row's prefix.

    ``gated=True`` wraps a scorer whose ``score`` takes the scored batch rows [S]
    (`argsfw.decoding.gated.GatedScorer`); otherwise ``score`` takes a chunk size.
    """

    def __init__(
        self,
        inner,
        rm,
        pad_id: int,
        stats: DecodeStats,
        gated: bool = False,
        reads: RowCursors | None = None,
    ):
        self.inner, self.rm, self.pad_id, self.stats, self.gated = inner, rm, pad_id, stats, gated
        self.device, _ = model_device_dtype(rm)
        self.reads = reads  # the rows' prompts, for our own whole-sequence reads

    def start(self, ids: torch.Tensor, mask: torch.Tensor, prompts: list[list[int]]) -> None:
        self.inner.start(ids, mask, prompts)
        self.seqs = [list(p) for p in prompts]  # each row's committed tokens
        self.last = torch.full((len(prompts),), float("nan"))  # [B] reward of the prefix
        self.held: tuple[torch.Tensor, torch.Tensor] | None = None  # ([B, k] cands, rewards)
        if self.reads is None:
            self.reads = untracked(len(prompts))

    def _take_committed(self, rows: list[int]) -> None:
        """Set ``last`` from the rewards of the tokens the inner scorer just committed, where one is not the pad id."""
        got = getattr(self.inner, "committed", None)
        if got is None or got[0].shape[1] == 0:
            return
        ids, valid, rewards = (t.cpu() for t in got)
        real = valid & (ids != self.pad_id)  # [S, P]
        col = torch.arange(ids.shape[1])
        last = (col * real).argmax(-1)  # [S] rightmost real non-pad column
        for j, r in enumerate(rows):
            if bool(real[j].any()):
                self.last[r] = float(rewards[j, last[j]])

    def score(self, cands: torch.Tensor, arg=None) -> torch.Tensor:
        """The inner scorer's rewards of ``cands`` [S, k], pad-id candidates read as HF reads them."""
        rewards = self.inner.score(cands, arg)
        rows = arg.tolist() if self.gated else list(range(cands.shape[0]))
        self._take_committed(rows)
        c_cpu, r_cpu = cands.cpu(), rewards.float().cpu()
        is_pad = c_cpu == self.pad_id  # [S, k]
        need = [r for j, r in enumerate(rows) if is_pad[j].any() and torch.isnan(self.last[r])]
        if need:
            self._read_prefix(need)
        if is_pad.any():
            prefix = self.last[rows][:, None].expand_as(r_cpu)
            r_cpu = torch.where(is_pad, prefix, r_cpu)
        batch = len(self.seqs)
        held_c = torch.full((batch, cands.shape[1]), -1, dtype=torch.long)
        held_r = torch.full((batch, cands.shape[1]), float("nan"))
        held_c[rows], held_r[rows] = c_cpu, r_cpu
        self.held = (held_c, held_r)
        return r_cpu.to(rewards.device, rewards.dtype)

    @torch.inference_mode()
    def _read_prefix(self, rows: list[int]) -> None:
        """Set ``last`` of ``rows`` from the RM's own forward over each row's sequence so far."""
        for r in rows:
            x = torch.tensor([self.seqs[r]], device=self.device)
            self.reads.begin()
            self.reads.read_whole(r, self.seqs[r])
            self.last[r] = float(self.rm(input_ids=x).logits[0, 0])
            self.stats.rm_forwards += 1
            self.stats.rm_tokens_in += x.shape[1]

    def commit(self, chosen: torch.Tensor, sequences=None) -> None:
        self.inner.commit(chosen, sequences)
        tokens = chosen.tolist()
        for r, tok in enumerate(tokens):
            self.seqs[r].append(tok)
            if tok == self.pad_id:
                continue  # the prefix's reward stays that of its last non-pad token
            scored = self.held is not None and bool((self.held[0][r] == tok).any())
            self.last[r] = self.held[1][r][self.held[0][r] == tok][0] if scored else float("nan")
        self.held = None

    def keep(self, rows: torch.Tensor) -> None:
        self.inner.keep(rows)
        idx = rows.cpu()
        self.seqs = [self.seqs[i] for i in idx.tolist()]
        self.last = self.last[idx]
        self.reads.keep(idx)
        if self.held is not None:
            self.held = (self.held[0][idx], self.held[1][idx])


def pad_readout(
    scorer, rm, stats: DecodeStats, gated: bool = False, reads: RowCursors | None = None
):
    """``scorer`` wrapped in `HFReadout` when the RM is a decoder with a pad id (else as is).

    ``reads``: the scorer's `RowCursors`; the wrapper counts its own reads through a fork of them.
    """
    from argsfw.decoding.scoring import rm_attention

    pad = getattr(rm.config, "pad_token_id", None)
    if pad is None or rm_attention(rm) != "causal":
        return scorer
    return HFReadout(
        scorer, rm, int(pad), stats, gated, reads.fork() if reads is not None else None
    )
