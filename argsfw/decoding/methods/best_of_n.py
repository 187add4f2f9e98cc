"""Whole-sequence methods over N samples per prompt, each read by the sequence RM as its own
Hugging Face forward reads it (`argsfw.decoding.sequence_scorers.sequence_rewards` is the
reference):

* best-of-N: the sample with the highest reward;
* soft best-of-N (Verdun et al., 2025): sample j with probability ∝ exp(r_j / λ), a
  KL-controlled best-of-N (λ → 0: best-of-N; λ → ∞: one plain sample), drawn with a seeded
  per-prompt generator like every other sampler;
* speculative best-of-N (Sun et al., NeurIPS 2024): rejection in rounds, as in the paper: every
  ``rejection_every`` new tokens the partial answers still running are scored and the lowest
  ``rejection_rate`` of each prompt's dropped, so compute goes to the promising ones; the
  survivors finish and the best is kept.

Each model reads a prompt once: the policy prefills it and its N samples share that cache;
the RM reads it once and each sample extends a copy of its cache
(`argsfw.decoding.prefix_cache.RewardReader`). Speculative rejection extends each live
sample's RM cache by the tokens since the last round only, and drops rejected samples from
both caches. An RM that the tree cache cannot read (own tokenizer, encoder, or rejected by the
probe) is read whole per sequence instead, and the ledger counts those re-reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from argsfw.decoding.config import knob
from argsfw.decoding.methods.baselines import Nucleus
from argsfw.decoding.registry import Method, Parts


@dataclass
class BestOfN(Nucleus):
    """N nucleus samples per prompt."""

    num_samples: int = knob(4, "N samples per prompt", ge=1)


@dataclass
class SoftBestOfN(BestOfN):
    """Soft best-of-N's choice temperature."""

    reward_temperature: float = knob(
        1.0, "lambda: sample j is picked w.p. ∝ exp(r_j / lambda) (0+: best-of-N)", gt=0
    )


@dataclass
class SpeculativeBestOfN(BestOfN):
    """Speculative rejection's schedule."""

    rejection_every: int = knob(8, "new tokens between rejection points", ge=1)
    rejection_rate: float = knob(
        0.5, "fraction of a prompt's live samples dropped at each point (lowest RM reward)",
        ge=0, lt=1,
    )  # fmt: skip


if TYPE_CHECKING:
    import torch

CHOICE_STREAM = -1  # the soft choice's own seeded stream (samples use 0 .. N-1)


def _samples(p: Parts, prune=None):
    """N nucleus samples per prompt: the `RowResult` of each, prompt-major (prompt i's are i*N ...)."""
    from argsfw.decoding.baselines import NucleusSampler
    from argsfw.decoding.sampling import make_generator
    from argsfw.decoding.search import decode_batch

    s, n = p.s, p.s.num_samples
    gens = [make_generator(s.seed, p.keys[r], sample=j) for r in p.rows for j in range(n)]
    chooser = NucleusSampler(s.top_p, s.temperature)
    return decode_batch(
        p.policy, None, chooser, p.prompts, p.rows, gens, s.max_new_tokens, p.eos, p.meter,
        repeat=n, prune=prune,
    )  # fmt: skip


def score_whole(p: Parts, seqs: list[list[int]], slots: list):
    """Rewards [len(seqs)] of whole policy-token sequences, each read alone by the RM (no shared
    prompt); ``slots``: the prompt of each, for the ledger."""
    from argsfw.decoding.cross_tokenizer import cut_retokenizer
    from argsfw.decoding.sequence_scorers import sequence_rewards

    d = p.decoder
    if not d.shared_tokenizer:
        seqs = cut_retokenizer(d.tokenizer, d.rm_tokenizer, d.rm_ctx, p.stats)(seqs)
    p.stats.scorer = "full"
    reads = p.meter.cursors("rm", slots)
    size = p.s.batch_size * getattr(p.s, "num_samples", 1)  # `score_sequences` serves any method
    return sequence_rewards(d.rm, seqs, p.stats, batch_size=size, reads=reads)


def sample_rewards(p: Parts, results) -> torch.Tensor:
    """Rewards [P*N] of prompt + each sample (prompt-major): the prompt read once per prompt."""
    from argsfw.decoding.prefix_cache import reward_reader

    n = p.s.num_samples
    reader = reward_reader(p)
    if reader is None:
        seqs = [p.prompts[i // n] + r.new_ids for i, r in enumerate(results)]
        return score_whole(p, seqs, [p.rows[i // n] for i in range(len(results))])
    p.stats.scorer = "tree"
    reader.extend(p.prompts)
    reader.repeat(n)
    return reader.extend([r.new_ids for r in results])


def _pick(p: Parts, results, rewards, chosen: list[int]):
    """One result per prompt: sample ``chosen[i]`` of prompt i, with its reward."""
    n, out = p.s.num_samples, []
    for i, j in enumerate(chosen):
        best = results[i * n + j]
        best.reward = float(rewards[i * n + j])
        out.append(best)
    return out


def _best(p: Parts):
    from argsfw.decoding.baselines import best_of_n

    results = _samples(p)
    rewards = sample_rewards(p, results)
    return _pick(p, results, rewards, best_of_n(rewards, p.s.num_samples))


def _soft(p: Parts):
    from argsfw.decoding.sampling import make_generator, sample_rows

    results = _samples(p)
    rewards = sample_rewards(p, results)
    n, lam = p.s.num_samples, float(p.s.reward_temperature)
    probs = (rewards.view(-1, n).double() / lam).softmax(-1)  # [P, N]
    gens = [make_generator(p.s.seed, p.keys[r], sample=CHOICE_STREAM) for r in p.rows]
    return _pick(p, results, rewards, sample_rows(probs, gens).tolist())


class _PartialReads:
    """Speculative rejection's RM side: the rewards of the samples not rejected yet, each
    sample's RM cache extended by its tokens since the last read (or, without a reader, each
    partial answer read whole)."""

    def __init__(self, p: Parts):
        from argsfw.decoding.prefix_cache import reward_reader

        self.p, self.n = p, p.s.num_samples
        total = len(p.rows) * self.n
        self.kept = list(range(total))  # samples not rejected, in order: the reader's rows
        self.read = [0] * total  # new tokens of each sample the RM has read
        self.reader = reward_reader(p)
        if self.reader is not None:
            p.stats.scorer = "tree"
            self.reader.extend(p.prompts)
            self.reader.repeat(self.n)

    def rewards(self, results, samples: list[int]) -> dict[int, float]:
        """Reward of prompt + answer so far for each of ``samples`` (among the kept ones)."""
        p, n = self.p, self.n
        if self.reader is None:
            seqs = [p.prompts[i // n] + results[i].new_ids for i in samples]
            got = score_whole(p, seqs, [p.rows[i // n] for i in samples])
            return dict(zip(samples, got.tolist()))
        # every kept sample catches up, finished ones too: each token is read once either way
        new = [results[i].new_ids[self.read[i] :] for i in self.kept]
        for i in self.kept:
            self.read[i] = len(results[i].new_ids)
        return dict(zip(self.kept, self.reader.extend(new).tolist()))

    def reject(self, stop: set[int]) -> None:
        """Drop samples ``stop`` from the RM cache."""
        if self.reader is not None:
            self.reader.keep([j for j, i in enumerate(self.kept) if i not in stop])
        self.kept = [i for i in self.kept if i not in stop]


def _speculative(p: Parts):
    import torch

    s, n = p.s, p.s.num_samples
    reads = _PartialReads(p)

    def prune(step: int, results, live: list[int]) -> set[int]:
        if step % s.rejection_every or s.rejection_rate == 0:
            return set()
        got = reads.rewards(results, live)
        stop: set[int] = set()
        for prompt in {i // n for i in live}:
            mine = [(got[i], i) for i in live if i // n == prompt]
            drop = min(len(mine) - 1, math.floor(s.rejection_rate * len(mine)))
            stop |= {i for _, i in sorted(mine)[:drop]}  # lowest first; ties: lower index
        reads.reject(stop)
        return stop

    results = _samples(p, prune)
    final = reads.rewards(results, reads.kept)
    rewards = torch.full((len(results),), float("-inf"))
    for i, r in final.items():
        rewards[i] = r
    chosen = rewards.view(-1, n).argmax(-1).tolist()  # survivors only (rejected: -inf)
    return _pick(p, results, rewards, chosen)


BEST_OF_N = Method(
    name="best-of-n",
    summary="N nucleus samples per prompt, the one the sequence RM rewards most",
    settings=BestOfN,
    needs="sequence",
    run=_best,
    samples=True,
    label_knobs=(("num_samples", "N"),),
    color="#1f77b4",
    marker="s",
    curve="num_samples",
)
SOFT_BEST_OF_N = Method(
    name="soft-best-of-n",
    summary="N samples, one picked with probability ∝ exp(reward / lambda) (KL-controlled BoN)",
    settings=SoftBestOfN,
    needs="sequence",
    run=_soft,
    samples=True,
    label_knobs=(("num_samples", "N"), ("reward_temperature", "λ")),
    color="#6baed6",
    marker="s",
    curve="num_samples",
)
SPECULATIVE_BEST_OF_N = Method(
    name="speculative-best-of-n",
    summary="best-of-N that scores partial answers and drops the worst early (speculative rejection)",
    settings=SpeculativeBestOfN,
    needs="sequence",
    run=_speculative,
    samples=True,
    label_knobs=(
        ("num_samples", "N"),
        ("rejection_every", "every"),
        ("rejection_rate", "drop"),
    ),
    color="#08306b",
    marker="s",
    curve="num_samples",
)
