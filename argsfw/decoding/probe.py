"""Which reward scorer runs: build any of them, and probe a reward model once to pick one.

Scorers, fastest first: ``tree`` (one cached forward per step over a tree-masked block,
`argsfw.decoding.scoring` / `argsfw.decoding.cross_tokenizer`), ``expanded`` (the prefix cache
repeated to the k candidates) and ``full`` (every candidate's whole sequence re-read), see
`argsfw.decoding.sequence_scorers`. A bidirectional RM (an encoder) has no prefix cache: only ``full``.

`probe_scorer` runs each usable scorer on two short prompts of different lengths (left
padding), three candidates per row and three steps (unchunked, chunked, unchunked, so
holding, adopting and committing are all exercised), and compares its rewards with the
reference: each whole sequence read alone, unpadded, no cache. The first scorer within the
dtype's tolerance wins; one that raises or misses is recorded with why. Cost: 3 forwards per
scorer plus 6 unpadded reads (a row's candidates share one), milliseconds for a small RM.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from argsfw.decoding.accounting import DecodeStats, RowCursors
from argsfw.decoding.config import SCORER_CHOICES
from argsfw.decoding.cross_tokenizer import CrossTokenizerScorer, cut_retokenizer, retokenizer
from argsfw.decoding.policy import left_pad
from argsfw.decoding.readout import pad_readout
from argsfw.decoding.reference_scorer import ReferenceScorer
from argsfw.decoding.scoring import SharedTokenizerScorer, model_device_dtype, rm_attention
from argsfw.decoding.sequence_scorers import ExpandedScorer, FullScorer
from argsfw.decoding.types import DecodeInputError

log = logging.getLogger("argsfw.decoding")

SCORERS = ("tree", "expanded", "full")
PROBE_PROMPTS = ("\n\nHuman: Hello, can you help me today?\n\nAssistant:", "Hi")
PROBE_WORDS = " Sure, I would be glad to help with that question."
# max |fast - reference| allowed, relative to max(1, |reference|): kernels differ in summation order
TOLERANCE = {torch.float64: 1e-7, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}


@dataclass
class ScorerSpec:
    """What a scorer needs besides the RM: the tokenizers (``rm_tokenizer`` None when shared) and the RM's context."""

    rm: object
    policy_tokenizer: object
    rm_tokenizer: object | None
    rm_ctx: int | None


def usable_scorers(rm) -> tuple[str, ...]:
    """The scorers that can read ``rm``: all three for a decoder, ``full`` for an encoder."""
    return SCORERS if rm_attention(rm) == "causal" else ("full",)


def build_scorer(name: str, spec: ScorerSpec, stats: DecodeStats, reads: RowCursors | None = None):
    """A fresh scorer ``name`` (one of `SCORERS`) that counts into ``stats`` (and tells ``reads``
    every position it computes: the batch rows' `RowCursors`, or None outside a decoding call)."""
    rm, pt, rt, ctx = spec.rm, spec.policy_tokenizer, spec.rm_tokenizer, spec.rm_ctx
    if rt is not None:  # RM ids come from re-tokenized text: the RM reads its own pad ids
        if name == "tree":
            return CrossTokenizerScorer(rm, pt, rt, stats, ctx, reads=reads)
        if name == "expanded":
            return ExpandedScorer(rm, stats, retokenizer(pt, rt), ctx, reads=reads)
        if name == "full":
            return FullScorer(rm, stats, cut_retokenizer(pt, rt, ctx, stats), reads=reads)
    elif name in SCORERS:
        scorer = {"tree": SharedTokenizerScorer, "expanded": ExpandedScorer, "full": FullScorer}
        return pad_readout(scorer[name](rm, stats, reads=reads), rm, stats, reads=reads)
    raise DecodeInputError(f"unknown scorer {name!r}; choose one of {', '.join(SCORER_CHOICES)}")


@dataclass
class ProbeResult:
    """The scorer picked and, per scorer tried, its largest error or the exception it raised."""

    scorer: str
    tried: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.tried.items())


def _probe_inputs(spec: ScorerSpec, k: int = 3) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Two policy-token prompts and, for each of 3 steps, k distinct candidate ids per row."""
    tok = spec.policy_tokenizer
    room = max(2, (spec.rm_ctx or 64) // 2 - 3)  # why: a short-context RM still gets probed
    prompts = [list(tok(p).input_ids)[-room:] for p in PROBE_PROMPTS]
    pool = list(dict.fromkeys(tok(PROBE_WORDS, add_special_tokens=False).input_ids))
    vocab = len(tok)
    pool += [i for i in range(vocab - 1, -1, -1) if i not in pool][: max(0, k + 3 - len(pool))]
    pad = getattr(spec.rm.config, "pad_token_id", None)
    if spec.rm_tokenizer is None and pad is not None and pad < vocab:
        pool = [i for i in pool if i != pad]
    else:
        pad = None
    steps = []
    for t in range(3):
        steps.append([[pool[(t + r + j) % len(pool)] for j in range(k)] for r in range(2)])
    if pad is not None:
        # why: a pad/EOS candidate is read where the RM's own forward reads it (before the pad);
        # row 1 scores it at step 1, row 0 commits it at step 2 and scores it again at step 3
        steps[0][1][2 % k] = pad
        steps[1][0][1 % k] = pad
        steps[2][0][0] = pad
    return prompts, steps


def _run(scorer, prompts, steps, device) -> list[torch.Tensor]:
    ids, mask = left_pad(prompts, 0, device)
    scorer.start(ids, mask, prompts)
    out = []
    for t, cands in enumerate(steps):
        c = torch.tensor(cands, device=device)
        out.append(scorer.score(c, 2 if t == 1 else None).float().cpu())  # [2, k]
        scorer.commit(c[:, t % c.shape[1]])
    return out


def _truth(spec: ScorerSpec, prompts, steps) -> list[torch.Tensor]:
    to_rm = None
    if spec.rm_tokenizer is not None:
        convert = cut_retokenizer(
            spec.policy_tokenizer, spec.rm_tokenizer, spec.rm_ctx, DecodeStats()
        )
        to_rm = lambda ids: convert([ids])[0]  # noqa: E731
    ref = ReferenceScorer(spec.rm, DecodeStats(), to_rm)
    seqs = [list(p) for p in prompts]
    out = []
    for t, cands in enumerate(steps):
        out.append(
            torch.tensor(
                [ref.score_sequences([s + [v] for v in row]) for s, row in zip(seqs, cands)]
            )
        )
        for s, row in zip(seqs, cands):
            s.append(row[t % len(row)])
    return out


def probe_scorer(spec: ScorerSpec, names: tuple[str, ...] | None = None) -> ProbeResult:
    """Pick the first of ``names`` (default: every usable scorer, fastest first) that reproduces full-sequence rewards.

    Raises:
        DecodeInputError: the RM cannot read a short sequence at all, or no scorer matches it.
    """
    rm = spec.rm
    usable = usable_scorers(rm)
    names = tuple(n for n in (names or usable) if n in usable)
    device, dtype = model_device_dtype(rm)
    prompts, steps = _probe_inputs(spec)
    try:
        truth = _truth(spec, prompts, steps)
    except Exception as exc:  # noqa: BLE001 - any failure of the model itself is the user's to see
        raise DecodeInputError(
            f"reward model {type(rm).__name__} cannot score a short sequence: {type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    finite = all(bool(torch.isfinite(t).all()) for t in truth)
    scale = max(1.0, max(float(t.abs().max()) for t in truth)) if finite else 1.0
    tol = TOLERANCE.get(dtype, 1e-3) * scale
    result = ProbeResult(scorer="")
    for name in names:
        try:
            got = _run(build_scorer(name, spec, DecodeStats()), prompts, steps, device)
        except Exception as exc:  # noqa: BLE001 - a scorer the model cannot take is skipped, and said so
            result.tried[name] = f"raised {type(exc).__name__}: {_one_line(exc)[:120]}"
            continue
        if not finite:  # a broken RM: decoding reports the NaN with its step and prompt
            result.tried[name] = "unverified (the reward model returns non-finite rewards)"
            result.scorer = name
            return result
        err = max(float((g - w).abs().max()) for g, w in zip(got, truth))
        ok = err <= tol
        result.tried[name] = f"max error {err:.2g} ({'within' if ok else 'over'} {tol:.2g})"
        if ok:
            result.scorer = name
            return result
    raise DecodeInputError(
        f"reward model {type(rm).__name__}: no scorer reproduces its full-sequence rewards "
        f"({result.summary()}); argsfw needs an AutoModelForSequenceClassification whose forward "
        "honours the attention mask"
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
