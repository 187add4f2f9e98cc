"""Whole-sequence methods over N samples per prompt, each read by the sequence RM as its own
Hugging Face forward reads it (`argsfw.decoding.fallback.sequence_rewards`):

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

from argsfw.decoding.registry import Method, Parts, register
from argsfw.decoding.types import DecodeInputError

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
    from argsfw.decoding.fallback import sequence_rewards

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


def _check_n(s) -> None:
    n = s.num_samples
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DecodeInputError(f"decode.num_samples must be a positive integer, got {n!r}")


def _check_soft(s) -> None:
    _check_n(s)
    lam = s.reward_temperature
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam > 0:
        raise DecodeInputError(f"decode.reward_temperature must be a number > 0, got {lam!r}")


def _check_speculative(s) -> None:
    _check_n(s)
    every, rate = s.rejection_every, s.rejection_rate
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise DecodeInputError(f"decode.rejection_every must be an integer >= 1, got {every!r}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise DecodeInputError(f"decode.rejection_rate must be in [0, 1), got {rate!r}")


_SAMPLING = ("num_samples", "top_p", "temperature")

BEST_OF_N = register(
    Method(
        name="best-of-n",
        summary="N nucleus samples per prompt, the one the sequence RM rewards most",
        knobs=_SAMPLING,
        needs="sequence",
        run=_best,
        samples=True,
        check=_check_n,
        label_knobs=(("num_samples", "N"),),
        color="#1f77b4",
        marker="s",
        curve="num_samples",
    )
)
SOFT_BEST_OF_N = register(
    Method(
        name="soft-best-of-n",
        summary="N samples, one picked with probability ∝ exp(reward / lambda) (KL-controlled BoN)",
        knobs=(*_SAMPLING, "reward_temperature"),
        needs="sequence",
        run=_soft,
        samples=True,
        check=_check_soft,
        label_knobs=(("num_samples", "N"), ("reward_temperature", "λ")),
        color="#6baed6",
        marker="s",
        curve="num_samples",
    )
)
SPECULATIVE_BEST_OF_N = register(
    Method(
        name="speculative-best-of-n",
        summary="best-of-N that scores partial answers and drops the worst early (speculative rejection)",
        knobs=(*_SAMPLING, "rejection_every", "rejection_rate"),
        needs="sequence",
        run=_speculative,
        samples=True,
        check=_check_speculative,
        label_knobs=(
            ("num_samples", "N"),
            ("rejection_every", "every"),
            ("rejection_rate", "drop"),
        ),
        color="#08306b",
        marker="s",
        curve="num_samples",
    )
)
