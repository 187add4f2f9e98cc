"""Blockwise controlled decoding (Mudgal et al., ICML 2024): at each block, K continuations of M
tokens are sampled from the policy, each prefix-so-far-plus-block is scored by a prefix scorer,
and the best is kept before the next block.

The scorer is the guide ``reward_model``: a value model V(x, y_<=t) (``stage: value``, CD-FUDGE,
reward_kind ``value``) or a sequence RM read on partial answers. It is read as its own Hugging
Face forward reads it (`argsfw.decoding.sequence_scorers.sequence_rewards` is the reference).
M = 1 is tokenwise guidance; M >= max_new_tokens is best-of-K.

Both caches are carried across blocks: the policy's and the guide's caches of each prompt hold
prompt + the kept blocks; a block expands them to K rows, extends each by its continuation and
keeps the winner's row (`argsfw.decoding.prefix_cache`). Nothing is re-read. A guide the tree
cache cannot read is read whole per candidate instead (counted as re-reads).
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


class _Guide:
    """The guide's rewards of prompt + prefix + each candidate block, one row per live prompt."""

    def __init__(self, p: Parts):
        from argsfw.decoding.prefix_cache import reward_reader

        self.p, self.k = p, p.s.num_samples
        self.reader = reward_reader(p)
        if self.reader is not None:
            p.stats.scorer = "tree"
            self.reader.extend(p.prompts)

    def read(self, live: list[int], cont, out):
        """Rewards [len(live) * K] of each live prompt's K candidate blocks ``cont``."""
        p, k = self.p, self.k
        if self.reader is None:
            from argsfw.decoding.methods.best_of_n import score_whole

            seqs = [p.prompts[i] + out[i].new_ids for i in live for _ in range(k)]
            seqs = [q + c.new_ids for q, c in zip(seqs, cont)]
            return score_whole(p, seqs, [p.rows[i] for i in live for _ in range(k)])
        self.reader.repeat(k)
        return self.reader.extend([c.new_ids for c in cont])

    def keep(self, rows: list[int]) -> None:
        """Keep the candidate rows ``rows`` (the winners that go on)."""
        if self.reader is not None:
            self.reader.keep(rows)


def _run(p: Parts):
    import torch

    from argsfw.decoding.baselines import NucleusSampler
    from argsfw.decoding.sampling import make_generator
    from argsfw.decoding.search import RowResult, decode_batch

    s, k = p.s, p.s.num_samples
    out = [RowResult() for _ in p.rows]
    chooser = NucleusSampler(s.top_p, s.temperature)
    guide = _Guide(p)
    logits = p.policy.prefill()
    live = list(range(len(p.rows)))  # prompts still decoding: the rows of both caches, in order
    block = 0
    while live:
        m = min(s.block_size, s.max_new_tokens - len(out[live[0]].new_ids))
        rows = [p.rows[i] for i in live]
        gens = [
            make_generator(s.seed, p.keys[r], sample=block * k + j) for r in rows for j in range(k)
        ]
        ext = [p.prompts[i] + out[i].new_ids for i in live]  # what each row has read (ctx)
        cont = decode_batch(
            p.policy, None, chooser, ext, rows, gens, m, p.eos, p.meter, repeat=k, logits=logits
        )
        rewards = guide.read(live, cont, out)
        best = rewards.view(-1, k).argmax(-1).tolist()
        going, winners, state_rows, last = [], [], [], []
        for a, i in enumerate(live):
            c = a * k + best[a]
            res = out[i]
            res.new_ids += cont[c].new_ids
            res.finished = cont[c].finished
            res.reward = float(rewards[c])
            res.scored_steps += 1
            if not res.finished and len(res.new_ids) < s.max_new_tokens:
                # a winner that did not finish ran all M steps: the policy state still holds it
                going.append(i)
                winners.append(c)
                state_rows.append(cont[c].state_row)
                last.append(cont[c].new_ids[-1])
        guide.keep(winners)
        live = going
        if live:
            p.policy.keep(torch.tensor(state_rows, dtype=torch.long))
            logits = p.policy.step(torch.tensor(last, dtype=torch.long))
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
