"""Reward-guided search (ARGS) and the batched, EOS-aware decoding loop every method shares.

ARGS step (Khanov et al., 2024): the policy's top-k tokens by raw logit are the candidates;
each scores ``logit(v) + w * r([x, v])``; ARGS-greedy appends the best, ARGS-stochastic samples
from ``softmax(score / temperature)`` over the k. A *chooser* implements one step's choice;
`decode_batch` runs any chooser over a batch with the policy's KV cache, stops each row after
its EOS (kept) or at ``max_new_tokens``, and drops finished rows from the batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from argsfw.decoding.accounting import Meter
from argsfw.decoding.policy import PolicyState
from argsfw.decoding.sampling import sample_rows
from argsfw.decoding.types import NonFiniteRewardError

log = logging.getLogger("argsfw.decoding")


@dataclass
class StepContext:
    """What a chooser knows besides the logits, for each live row ``j`` of this step.

    ``step`` is 1-based; ``rows[j]`` the row's prompt index in the call (stable while row ``j``
    itself shifts as rows finish); ``generators[j]`` its seeded generator; ``prompts[j]`` its
    prompt ids; ``generated[j]`` the tokens it chose so far (read-only; this step's not yet).
    """

    step: int
    rows: list[int]
    generators: list[torch.Generator]
    prompts: list[list[int]] = field(default_factory=list)
    generated: list[list[int]] = field(default_factory=list)


@dataclass
class RowResult:
    """One row's output of `decode_batch`: generated ids, whether it ended with EOS, last reward
    seen (None when the last step did not score), the steps the guide scored, and
    ``state_row``: the row of the policy state that still holds it when `decode_batch` returns
    (its cache lacks the last token, which was chosen but not fed), None once dropped.

    Costs are not counted here: every model wrapper tells the batch's ledgers what it computed
    (`argsfw.decoding.accounting.PrefixLedger`), per prompt."""

    new_ids: list[int] = field(default_factory=list)
    finished: bool = False
    reward: float | None = None
    scored_steps: int = 0  # steps at which the reward model scored this row's candidates
    state_row: int | None = None


# A chooser maps (logits [B, V], scorer or None, context) to (tokens [B], rewards [B] or None).
Chooser = Callable[[torch.Tensor, object, StepContext], tuple[torch.Tensor, torch.Tensor | None]]


def check_finite(rewards: torch.Tensor, cands: torch.Tensor, ctx: StepContext) -> None:
    """Raise `NonFiniteRewardError` naming the step, prompt and candidate when a reward is NaN/inf."""
    bad = ~torch.isfinite(rewards)
    if bool(bad.any()):
        r, c = (int(x) for x in bad.nonzero()[0])
        raise NonFiniteRewardError(
            f"reward model returned {rewards[r, c].item()} at step {ctx.step} for prompt {ctx.rows[r]} "
            f"(candidate token {int(cands[r, c])}); check the reward model's dtype and weights"
        )


class ArgsChooser:
    """One ARGS step: top-k candidates by raw logit, reward-weighted score, argmax or sample.

    ``chunk_size`` (greedy-large) bounds how many candidates the RM reads per forward.
    ``describe`` (token ids -> strings) turns on per-step debug logging.
    """

    def __init__(
        self,
        weight: float,
        topk: int,
        greedy: bool = True,
        temperature: float = 1.0,
        chunk_size: int | None = None,
        describe: Callable[[list[int]], list[str]] | None = None,
    ):
        self.weight, self.topk, self.greedy = weight, topk, greedy
        self.temperature, self.chunk_size, self.describe = temperature, chunk_size, describe

    def __call__(
        self, logits: torch.Tensor, scorer, ctx: StepContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        top_logits, cands = logits.topk(self.topk, dim=-1)  # [B, k] each
        rewards = None
        scores = top_logits
        if scorer is not None and self.weight != 0:
            rewards = scorer.score(cands, self.chunk_size)  # [B, k]
            check_finite(rewards, cands, ctx)
            scores = top_logits + self.weight * rewards
        if self.greedy:
            idx = scores.argmax(-1)  # [B]
        else:
            idx = sample_rows((scores / self.temperature).softmax(-1), ctx.generators)
        tokens = cands.gather(1, idx[:, None])[:, 0]
        chosen_r = rewards.gather(1, idx[:, None])[:, 0] if rewards is not None else None
        if self.describe is not None:
            self._log(ctx, cands, top_logits, rewards, scores, idx)
        return tokens, chosen_r

    def _log(self, ctx, cands, logits, rewards, scores, idx) -> None:
        for j, row in enumerate(ctx.rows):
            words = self.describe(cands[j].tolist())
            parts = [
                f"{w!r}: logit={lg:.3f}"
                + (f" reward={r:.3f}" if rewards is not None else "")
                + f" score={s:.3f}"
                for w, lg, r, s in zip(
                    words,
                    logits[j].tolist(),
                    rewards[j].tolist() if rewards is not None else [0.0] * len(words),
                    scores[j].tolist(),
                )
            ]
            log.debug(
                "step %d prompt %d: chose %r | %s",
                ctx.step,
                row,
                words[int(idx[j])],
                "; ".join(parts),
            )


@torch.inference_mode()
def decode_batch(
    policy: PolicyState,
    scorer,
    chooser: Chooser,
    prompts: list[list[int]],
    rows: list[int],
    generators: list[torch.Generator],
    max_new_tokens: int,
    eos_ids: list[int],
    meter: Meter,
    repeat: int = 1,
    prune: Callable[[int, list[RowResult], list[int]], set[int]] | None = None,
    logits: torch.Tensor | None = None,
) -> list[RowResult]:
    """Decode one batch; returns a `RowResult` per row, in order.

    ``prompts`` are the rows' unpadded token lists (``policy`` holds them left padded),
    ``rows`` their prompt indices (for messages), ``generators`` one per row. With
    ``repeat > 1`` the prompts are read once and each row is then decoded ``repeat`` times
    (rows ``i*repeat ... i*repeat + repeat-1``; ``generators`` must hold one per copy).
    An empty ``eos_ids`` disables EOS stopping. ``prune(step, results, alive)``, called after
    every step with the result index of each live row, returns the result indices to stop now
    (unfinished; whole-sequence methods such as speculative best-of-N reject partial answers).
    ``logits`` [B, V] continue a policy state that has already read its rows (a later block
    of blockwise decoding): nothing is prefilled, ``scorer`` must be None and ``prompts`` are
    what each row has read so far (the chooser's ``ctx.prompts``).
    """
    if logits is None:
        if scorer is not None:
            scorer.start(policy.ids, policy.mask, prompts)
        logits = policy.prefill()  # [B, V]
    elif scorer is not None:
        raise ValueError("decode_batch: a continued policy state (logits given) takes no scorer")
    if repeat > 1:
        policy.repeat(repeat)
        logits = logits.repeat_interleave(repeat, dim=0)
        prompts = [p for p in prompts for _ in range(repeat)]
        rows = [r for r in rows for _ in range(repeat)]
    results = [RowResult() for _ in rows]
    alive = list(range(len(rows)))  # batch row -> result index
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=logits.device)
    for t in range(max_new_tokens):
        ctx = StepContext(
            t + 1, [rows[i] for i in alive], [generators[i] for i in alive],
            [prompts[i] for i in alive], [results[i].new_ids for i in alive],
        )  # fmt: skip
        tokens, rewards = chooser(logits, scorer, ctx)  # [B], [B] (NaN: not scored) or None
        tok_list = tokens.tolist()
        rew_list = rewards.tolist() if rewards is not None else [math.nan] * len(tok_list)
        done = (
            torch.isin(tokens, eos) if eos.numel() else torch.zeros_like(tokens, dtype=torch.bool)
        )
        done_list = done.tolist()
        for j, i in enumerate(alive):
            res = results[i]
            res.new_ids.append(tok_list[j])
            res.reward = None if math.isnan(rew_list[j]) else rew_list[j]
            res.scored_steps += res.reward is not None
            res.finished = done_list[j]
        meter.stats.new_tokens += len(tok_list)
        meter.sample()
        if t == max_new_tokens - 1:
            break
        live = [i for i, d in zip(alive, done_list) if not d]
        stop = prune(t + 1, results, live) if prune is not None and live else set()
        if any(done_list) or stop:
            keep = [j for j, d in enumerate(done_list) if not d and alive[j] not in stop]
            if not keep:
                alive = []
                break
            keep_t = torch.tensor(keep, dtype=torch.long, device=tokens.device)
            policy.keep(keep_t)
            if scorer is not None:
                scorer.keep(keep_t)
            tokens = tokens[keep_t]
            alive = [alive[j] for j in keep]
        if scorer is not None:
            scorer.commit(tokens)
        logits = policy.step(tokens)
    for j, i in enumerate(alive):
        results[i].state_row = j
    return results
