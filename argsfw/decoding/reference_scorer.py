"""The test oracle for reward scoring: a slow, obviously right scorer, used by the tests and the probe.

`ReferenceScorer` is what `argsfw.decoding.reference.reference_decode` (the reference decoder
the engine is tested against) and `argsfw.decoding.probe` (which picks the fast scorer whose
rewards match it) compare the fast scorers of `argsfw.decoding.scoring`,
`argsfw.decoding.cross_tokenizer` and `argsfw.decoding.sequence_scorers` with. The engine never
decodes with it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from argsfw.decoding.accounting import DecodeStats
from argsfw.decoding.scoring import model_device_dtype


class ReferenceScorer:
    """The slow, obviously right scorer: the RM's own forward over every full candidate
    sequence, no cache, no padding, ``rm(input_ids, attention_mask).logits``.

    It shares no code with the fast scorers: the reward is whatever the model's Hugging Face
    forward reads (a decoder: its rightmost non-pad token). ``to_rm_ids`` maps policy ids to
    the RM's input ids (identity for a shared tokenizer; see
    `argsfw.decoding.cross_tokenizer.retokenizer` otherwise).
    """

    def __init__(
        self, rm, stats: DecodeStats, to_rm_ids: Callable[[list[int]], list[int]] | None = None
    ):
        self.rm = rm
        self.device, _ = model_device_dtype(rm)
        self.stats = stats
        self.to_rm_ids = to_rm_ids or (lambda ids: list(ids))
        # a decoder classifier without a pad id refuses batches of more than one row
        self.one_by_one = getattr(rm.config, "pad_token_id", None) is None

    def _forward(self, rows: list[list[int]]) -> list[float]:
        x = torch.tensor(rows, device=self.device)
        self.stats.rm_forwards += 1
        self.stats.rm_tokens_in += x.numel()
        return self.rm(input_ids=x, attention_mask=torch.ones_like(x)).logits[:, 0].tolist()

    @torch.inference_mode()
    def score_sequence(self, ids: list[int]) -> float:
        """Reward of one whole policy-token sequence, as the RM's own forward reads it."""
        return self._forward([self.to_rm_ids(ids)])[0]

    @torch.inference_mode()
    def score_sequences(self, seqs: list[list[int]]) -> list[float]:
        """`score_sequence` of each of ``seqs``; sequences of one RM length share an unpadded forward."""
        rm_ids = [self.to_rm_ids(s) for s in seqs]
        out = [0.0] * len(seqs)
        for n in sorted({len(r) for r in rm_ids}):
            idx = [i for i, r in enumerate(rm_ids) if len(r) == n]
            groups = [[i] for i in idx] if self.one_by_one else [idx]
            for g in groups:
                for i, v in zip(g, self._forward([rm_ids[i] for i in g])):
                    out[i] = v
        return out
