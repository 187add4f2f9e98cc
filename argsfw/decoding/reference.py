"""The slow, obviously right reference decoder the fast engine is tested against.

One prompt at a time, no KV cache anywhere: every step the policy re-reads the whole sequence
and the reward model re-reads every full candidate sequence (re-tokenized for an RM with its
own tokenizer). The selection math is written out again here rather than imported, so the
tests compare two independent implementations; only the seeded sampler is shared, because
"same tokens under the same seed" needs the same random draws.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from argsfw.decoding.accounting import DecodeStats
from argsfw.decoding.reference_scorer import ReferenceScorer
from argsfw.decoding.sampling import sample_rows


@torch.inference_mode()
def reference_decode(
    llm,
    rm,
    prompt_ids: list[int],
    *,
    weight: float,
    topk: int,
    max_new_tokens: int,
    greedy: bool = True,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    eos_ids: tuple[int, ...] = (),
    to_rm_ids: Callable[[list[int]], list[int]] | None = None,
    stats: DecodeStats | None = None,
    gate_threshold: float | None = None,
) -> tuple[list[int], bool]:
    """ARGS-decode one prompt the slow way; returns ``(new_ids, ended_with_eos)``.

    ``to_rm_ids`` maps a policy id list to the RM's input ids (identity when None). With
    ``rm=None`` or ``weight=0`` the reward is not computed (plain top-k-restricted choice).
    With ``gate_threshold`` τ (args-gated), a step whose top-1 probability exceeds τ takes the
    policy's argmax without consulting the RM.
    """
    stats = stats or DecodeStats()
    scorer = ReferenceScorer(rm, stats, to_rm_ids) if rm is not None and weight != 0 else None
    device = next(llm.parameters()).device
    ids = list(prompt_ids)
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = llm(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float()  # [V]
        stats.llm_forwards += 1
        if gate_threshold is not None and float(torch.softmax(logits, -1).max()) > gate_threshold:
            tok = int(logits.argmax())
            ids.append(tok)
            new.append(tok)
            if tok in eos_ids:
                return new, True
            continue
        top_logits, cands = logits.topk(topk)  # [k]
        scores = top_logits.clone()
        if scorer is not None:
            for j, v in enumerate(cands.tolist()):
                scores[j] = top_logits[j] + weight * scorer.score_sequence(ids + [v])
        tok = _pick(scores, cands, greedy, temperature, generator)
        ids.append(tok)
        new.append(tok)
        if tok in eos_ids:
            return new, True
    return new, False


@torch.inference_mode()
def reference_token_decode(
    llm,
    rm,
    prompt_ids: list[int],
    *,
    genarm: bool,
    greedy: bool,
    alpha: float = 1.0,
    weight: float = 1.0,
    topk: int = 10,
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    eos_ids: tuple[int, ...] = (),
    stats: DecodeStats | None = None,
) -> tuple[list[int], bool]:
    """GenARM / token-rm decode of one prompt the slow way; returns ``(new_ids, ended_with_eos)``.

    Every step both models re-read the whole sequence (no cache, batch 1). ``genarm=True``
    (GenARM): sample from ``softmax((log p_base + alpha * log p_arm) / (1 + alpha) /
    temperature)`` over the vocabulary (``greedy``: its argmax). ``genarm=False`` (token-rm):
    ARGS over the policy's top-k with ``r(v)`` the RM's raw next-token logit of v, its argmax
    (``greedy``) or sampled. With ``alpha=0`` / ``weight=0`` the RM is not read.
    """
    stats = stats or DecodeStats()
    device = next(llm.parameters()).device
    rm_device = next(rm.parameters()).device if rm is not None else device
    ids = list(prompt_ids)
    new: list[int] = []
    uses_rm = rm is not None and (alpha if genarm else weight) != 0
    for _ in range(max_new_tokens):
        logits = llm(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float()  # [V]
        stats.llm_forwards += 1
        head = None
        if uses_rm:
            x = torch.tensor([ids], device=rm_device)
            head = rm(input_ids=x).logits[0, -1].float().to(device)  # [V]
            stats.rm_forwards += 1
            stats.rm_tokens_in += x.numel()
        if genarm:
            scores, cands = logits, torch.arange(logits.shape[0], device=device)
            if head is not None:
                log_p = logits - torch.logsumexp(logits, 0)
                log_r = head - torch.logsumexp(head, 0)
                scores = (log_p + alpha * log_r) / (1 + alpha)
        else:
            top, cands = logits.topk(topk)  # [k]
            scores = top + weight * head[cands] if head is not None else top
        tok = _pick(scores, cands, greedy, temperature, generator)
        ids.append(tok)
        new.append(tok)
        if tok in eos_ids:
            return new, True
    return new, False


def _pick(scores: torch.Tensor, cands: torch.Tensor, greedy: bool, temperature, generator) -> int:
    """The token chosen among ``cands`` [k] by ``scores`` [k]: argmax, or a sample at ``temperature``."""
    if greedy:
        return int(cands[int(scores.argmax())])
    return int(cands[int(sample_rows((scores / temperature).softmax(-1)[None], [generator])[0])])
