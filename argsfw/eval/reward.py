"""Average reward of generations under a scalar reward model, as the original measured it.

The text scored is prompt + continuation, the continuation cut at the first ``human:`` in
any case for HH-style dialogue (``cut_at_human``), tokenized with the tokenizer's defaults
(BOS added, as the original). Texts of ``max_tokens`` tokens or more are skipped and counted
(the original used 1334). A text longer than the reward model's own context (a 512-token
encoder RM such as DeBERTa) is cut from the left, its special tokens kept, and counted. Any
one-label sequence classifier works, decoder or encoder. Scoring is batched with right padding:
a decoder classifier reads the last non-pad token of each row, an encoder pools under the
padding mask, so a batch gives the same scores as one-by-one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from argsfw.eval.inputs import EvalRecord, cut_at_human
from argsfw.eval.stats import mean_stderr

log = logging.getLogger(__name__)


@dataclass
class RewardResult:
    """Scores of the texts that fit (``None`` at skipped positions), their mean and its SE."""

    scores: list[float | None]
    mean: float | None
    stderr: float | None
    n_scored: int
    n_skipped: int
    n_truncated: int = 0  # scored after cutting from the left to the RM's context
    n_cached: int = 0  # taken from the score cache, not read again


def reward_texts(
    records: Sequence[EvalRecord],
    cut_human: bool = True,
    tokenizer=None,
    max_prompt_tokens: int | None = None,
) -> list[str]:
    """Prompt + continuation for each record, the continuation cut at ``human:`` if asked.

    With ``max_prompt_tokens`` the prompt keeps only its last N tokens under ``tokenizer``
    (what predict's ``data.max_prompt_length`` let the policy and the guide RM read).
    """
    out = []
    for r in records:
        prompt = r.prompt
        if max_prompt_tokens is not None:
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            if len(ids) > max_prompt_tokens:
                prompt = tokenizer.decode(ids[-max_prompt_tokens:])
        out.append(prompt + (cut_at_human(r.continuation) if cut_human else r.continuation))
    return out


def load_reward(
    spec: str | os.PathLike,
    tokenizer_spec: str | os.PathLike | None = None,
    dtype: str = "float32",
    device: str | None = None,
):
    """Load ``(model, tokenizer)`` from an HF dir, an argsfw run dir or a hub id.

    The tokenizer comes from `tokenizer_spec` when given (the original passed the base
    LLM's), else from the reward model's directory.

    Raises:
        argsfw.models.ModelPathError: a path is missing or not a model directory.
    """
    from argsfw.models import default_device, load_reward_model, load_tokenizer

    tokenizer = load_tokenizer(tokenizer_spec or spec, "reward tokenizer")
    model = load_reward_model(
        spec, dtype=dtype, device=device or default_device(), tokenizer=tokenizer
    )
    return model, tokenizer


@torch.no_grad()
def score_texts(
    texts: Sequence[str],
    model,
    tokenizer,
    batch_size: int = 8,
    max_tokens: int = 1334,
    cache=None,
) -> RewardResult:
    """Score `texts` with a ``num_labels=1`` sequence classifier, in right-padded batches.

    `cache`: an `argsfw.eval.score_cache.ScoreCache` of this model; a sequence it holds is not
    read again, and every sequence read is added to it.

    Returns:
        A `RewardResult`; texts with ``len(ids) >= max_tokens`` are skipped and counted.
    """
    device = next(model.parameters()).device
    # why the model's pad id: the classifier finds each row's last token by that id
    pad_id = model.config.pad_token_id
    if pad_id is None:
        pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        model.config.pad_token_id = pad_id
    from argsfw.decoding.engine import rm_context_length
    from argsfw.models import cut_left, special_wrap

    encoded = [tokenizer(t)["input_ids"] for t in texts]
    keep = [i for i, ids in enumerate(encoded) if len(ids) < max_tokens]
    ctx = rm_context_length(model.config)
    n_truncated = sum(ctx is not None and len(encoded[i]) > ctx for i in keep)
    if n_truncated:
        wrap = special_wrap(tokenizer)
        encoded = [cut_left(ids, ctx, wrap) for ids in encoded]
        log.warning(
            "reward: cut %d texts from the left to the reward model's context of %d tokens",
            n_truncated,
            ctx,
        )
    scores: list[float | None] = [None] * len(texts)
    todo = keep
    if cache is not None:
        for i in keep:
            scores[i] = cache.get(encoded[i])
        todo = [i for i in keep if scores[i] is None]
    todo = sorted(todo, key=lambda i: len(encoded[i]))  # similar lengths per batch, less padding
    for start in range(0, len(todo), batch_size):
        idx = todo[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):  # right padding: real tokens first
            ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[row, : len(encoded[i])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # [B, 1]
        for row, i in enumerate(idx):
            scores[i] = float(logits[row, 0])
        if cache is not None:
            cache.add([(encoded[i], scores[i]) for i in idx])
    n_skipped = len(texts) - len(keep)
    if n_skipped:
        log.warning(
            "reward: skipped %d of %d texts of %d tokens or more", n_skipped, len(texts), max_tokens
        )
    mean, se = mean_stderr([s for s in scores if s is not None])
    n_cached = len(keep) - len(todo)
    return RewardResult(scores, mean, se, len(keep), n_skipped, n_truncated, n_cached)
