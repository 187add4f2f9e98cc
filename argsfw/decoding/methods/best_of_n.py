"""Best-of-N: N nucleus samples per prompt, each scored whole by the sequence RM (read as its own
Hugging Face forward reads it), the best kept. Its cost counts every sample."""

from __future__ import annotations

from argsfw.decoding.registry import Method, Parts, register
from argsfw.decoding.types import DecodeInputError


def _run(p: Parts):
    from argsfw.decoding.baselines import NucleusSampler, best_of_n
    from argsfw.decoding.cross_tokenizer import cut_retokenizer
    from argsfw.decoding.fallback import sequence_rewards
    from argsfw.decoding.sampling import make_generator
    from argsfw.decoding.search import decode_batch

    s, d, n = p.s, p.decoder, p.s.num_samples
    gens = [make_generator(s.seed, p.keys[r], sample=j) for r in p.rows for j in range(n)]
    chooser = NucleusSampler(s.top_p, s.temperature)
    results = decode_batch(
        p.policy, None, chooser, p.prompts, p.rows, gens, s.max_new_tokens, p.eos, p.meter, repeat=n
    )
    seqs = [p.prompts[i // n] + r.new_ids for i, r in enumerate(results)]
    if not d.shared_tokenizer:
        seqs = cut_retokenizer(d.tokenizer, d.rm_tokenizer, d.rm_ctx, p.stats)(seqs)
    p.stats.scorer = "full"
    rewards = sequence_rewards(d.rm, seqs, p.stats, batch_size=s.batch_size * n)
    out = []
    for i, j in enumerate(best_of_n(rewards, n)):
        copies = range(i * n, i * n + n)
        best = results[i * n + j]
        best.reward = float(rewards[i * n + j])
        best.llm_tokens = sum(results[c].llm_tokens for c in copies)  # prompt once + N samples
        best.rm_tokens = sum(len(seqs[c]) for c in copies)  # every sample scored whole
        out.append(best)
    return out


def _check(s) -> None:
    n = s.num_samples
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DecodeInputError(f"decode.num_samples must be a positive integer, got {n!r}")


BEST_OF_N = register(
    Method(
        name="best-of-n",
        summary="N nucleus samples per prompt, the one the sequence RM rewards most",
        knobs=("num_samples", "top_p", "temperature"),
        needs="sequence",
        run=_run,
        samples=True,
        check=_check,
        label_knobs=(("num_samples", "N"),),
        color="#1f77b4",
        marker="s",
        curve="num_samples",
    )
)
