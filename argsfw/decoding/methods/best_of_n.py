"""Whole-sequence methods over N samples per prompt, each read by the sequence RM as its own
Hugging Face forward reads it (`argsfw.decoding.sequence_scorers.sequence_rewards`):

* best-of-N: the sample with the highest reward;
* soft best-of-N (Verdun et al., 2025): sample j with probability ∝ exp(r_j / λ), a
  KL-controlled best-of-N (λ → 0: best-of-N; λ → ∞: one plain sample), drawn with a seeded
  per-prompt generator like every other sampler;
* speculative best-of-N (Sun et al., NeurIPS 2024): every ``rejection_every`` new tokens the
  partial answers still running are scored and the lowest ``rejection_rate`` of each prompt's
  dropped, so compute goes to the promising ones; the survivors finish and the best is kept.

Costs count what was computed: every sample's policy tokens (a rejected one's up to its
rejection), every RM read (each partial scoring and each final one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


CHOICE_STREAM = -1  # the soft choice's own seeded stream (samples use 0 .. N-1)


def _samples(p: Parts, prune=None):
    """N nucleus samples per prompt: ``(results, seqs)``, prompt-major (prompt i's are i*N ...)."""
    from argsfw.decoding.baselines import NucleusSampler
    from argsfw.decoding.sampling import make_generator
    from argsfw.decoding.search import decode_batch

    s, n = p.s, p.s.num_samples
    gens = [make_generator(s.seed, p.keys[r], sample=j) for r in p.rows for j in range(n)]
    chooser = NucleusSampler(s.top_p, s.temperature)
    results = decode_batch(
        p.policy, None, chooser, p.prompts, p.rows, gens, s.max_new_tokens, p.eos, p.meter,
        repeat=n, prune=prune,
    )  # fmt: skip
    return results, [p.prompts[i // n] + r.new_ids for i, r in enumerate(results)]


def score_whole(p: Parts, seqs: list[list[int]]):
    """Rewards [len(seqs)] and each sequence's RM token count, read whole by the sequence RM."""
    from argsfw.decoding.cross_tokenizer import cut_retokenizer
    from argsfw.decoding.sequence_scorers import sequence_rewards

    d = p.decoder
    if not d.shared_tokenizer:
        seqs = cut_retokenizer(d.tokenizer, d.rm_tokenizer, d.rm_ctx, p.stats)(seqs)
    p.stats.scorer = "full"
    rewards = sequence_rewards(d.rm, seqs, p.stats, batch_size=p.s.batch_size * p.s.num_samples)
    return rewards, [len(q) for q in seqs]


def _pick(p: Parts, results, rewards, rm_tokens, chosen: list[int]):
    """One result per prompt: sample ``chosen[i]`` of prompt i, with the cost of all N."""
    n, out = p.s.num_samples, []
    for i, j in enumerate(chosen):
        copies = range(i * n, i * n + n)
        best = results[i * n + j]
        best.reward = float(rewards[i * n + j])
        best.llm_tokens = sum(results[c].llm_tokens for c in copies)  # prompt once + N samples
        best.rm_tokens = sum(rm_tokens[c] for c in copies)
        out.append(best)
    return out


def _best(p: Parts):
    from argsfw.decoding.baselines import best_of_n

    results, seqs = _samples(p)
    rewards, rm_tokens = score_whole(p, seqs)
    return _pick(p, results, rewards, rm_tokens, best_of_n(rewards, p.s.num_samples))


def _soft(p: Parts):
    from argsfw.decoding.sampling import make_generator, sample_rows

    results, seqs = _samples(p)
    rewards, rm_tokens = score_whole(p, seqs)
    n, lam = p.s.num_samples, float(p.s.reward_temperature)
    probs = (rewards.view(-1, n).double() / lam).softmax(-1)  # [P, N]
    gens = [make_generator(p.s.seed, p.keys[r], sample=CHOICE_STREAM) for r in p.rows]
    return _pick(p, results, rewards, rm_tokens, sample_rows(probs, gens).tolist())


def _speculative(p: Parts):
    s, n = p.s, p.s.num_samples
    rejected: set[int] = set()
    partial_tokens = [0] * (len(p.rows) * n)  # RM tokens spent on each sample's partial reads

    def prune(step: int, results, live: list[int]) -> set[int]:
        if step % s.rejection_every or s.rejection_rate == 0:
            return set()
        seqs = [p.prompts[i // n] + results[i].new_ids for i in live]
        rewards, lengths = score_whole(p, seqs)
        for i, m in zip(live, lengths):
            partial_tokens[i] += m
        stop: set[int] = set()
        for prompt in {i // n for i in live}:
            mine = [(float(r), i) for r, i in zip(rewards.tolist(), live) if i // n == prompt]
            drop = min(len(mine) - 1, math.floor(s.rejection_rate * len(mine)))
            stop |= {i for _, i in sorted(mine)[:drop]}  # lowest first; ties: lower index
        rejected.update(stop)
        return stop

    results, seqs = _samples(p, prune)
    final = [i for i in range(len(results)) if i not in rejected]
    rewards_final, lengths = score_whole(p, [seqs[i] for i in final])
    import torch

    rewards = torch.full((len(results),), float("-inf"))
    rewards[final] = rewards_final
    rm_tokens = list(partial_tokens)
    for i, m in zip(final, lengths):
        rm_tokens[i] += m
    chosen = rewards.view(-1, n).argmax(-1).tolist()  # survivors only (rejected: -inf)
    return _pick(p, results, rewards, rm_tokens, chosen)


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
