"""Blockwise controlled decoding (Mudgal et al., ICML 2024): at each block, K continuations of M
tokens are sampled from the policy, each prefix-so-far-plus-block is scored by a prefix scorer,
and the best is kept before the next block.

The scorer is the guide ``reward_model``: a value model V(x, y_<=t) (``stage: value``, CD-FUDGE,
reward_kind ``value``) or a sequence RM read on partial answers. It is read as its own Hugging
Face forward reads it (`argsfw.decoding.sequence_scorers.sequence_rewards`). M = 1 is tokenwise
guidance; M >= max_new_tokens is best-of-K.

Each block re-reads prompt and prefix with the policy (no KV cache carried across blocks); the
compute columns count those re-reads, as they count every scored sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

from argsfw.decoding.config import knob
from argsfw.decoding.methods.baselines import Nucleus
from argsfw.decoding.registry import Method, Parts


@dataclass
class Blockwise(Nucleus):
    """K sampled blocks of M tokens."""

    num_samples: int = knob(4, "K continuations sampled per block", ge=1)
    block_size: int = knob(
        4, "M: tokens per block (1: tokenwise; >= max_new_tokens: best-of-K)", ge=1
    )


def _run(p: Parts):
    from argsfw.decoding.baselines import NucleusSampler
    from argsfw.decoding.methods.best_of_n import score_whole
    from argsfw.decoding.policy import PolicyState, left_pad
    from argsfw.decoding.sampling import make_generator
    from argsfw.decoding.search import RowResult, decode_batch

    s, d, k = p.s, p.decoder, p.s.num_samples
    n = len(p.rows)
    out = [RowResult() for _ in range(n)]
    chooser = NucleusSampler(s.top_p, s.temperature)
    block = 0
    while True:
        live = [
            i for i in range(n) if not out[i].finished and len(out[i].new_ids) < s.max_new_tokens
        ]
        if not live:
            break
        m = min(s.block_size, s.max_new_tokens - len(out[live[0]].new_ids))
        ext = [p.prompts[i] + out[i].new_ids for i in live]
        ids, mask = left_pad(ext, d.pad_id, d.device)
        policy = PolicyState(d.llm, ids, mask, p.stats)
        rows = [p.rows[i] for i in live]
        gens = [
            make_generator(s.seed, p.keys[r], sample=block * k + j) for r in rows for j in range(k)
        ]
        cont = decode_batch(policy, None, chooser, ext, rows, gens, m, p.eos, p.meter, repeat=k)
        rewards, lengths = score_whole(p, [ext[c // k] + r.new_ids for c, r in enumerate(cont)])
        best = rewards.view(-1, k).argmax(-1).tolist()
        for a, i in enumerate(live):
            pick = cont[a * k + best[a]]
            res = out[i]
            res.new_ids += pick.new_ids
            res.finished = pick.finished
            res.reward = float(rewards[a * k + best[a]])
            res.llm_tokens += sum(cont[a * k + j].llm_tokens for j in range(k))
            res.rm_tokens += sum(lengths[a * k + j] for j in range(k))
            res.scored_steps += 1
        block += 1
    return out


CD_BLOCKWISE = Method(
    name="cd-blockwise",
    summary="controlled decoding: K sampled blocks of M tokens, the best by a value model (or RM) kept",
    settings=Blockwise,
    needs="value",
    run=_run,
    samples=True,
    label_knobs=(("num_samples", "K"), ("block_size", "M")),
    color="#e6550d",
    marker="^",
    curve="block_size",
    counts_scored_steps=True,
)
