"""ARGS-gated: ARGS-greedy that calls the RM only at the steps where the policy is unsure (its
top-1 probability <= tau); confident steps take the policy's argmax. See `argsfw.decoding.gated`."""

from __future__ import annotations

from dataclasses import dataclass

from argsfw.decoding.config import knob
from argsfw.decoding.methods.args import Args
from argsfw.decoding.registry import Method, Parts
from argsfw.decoding.types import DecodeInputError


@dataclass
class Gated(Args):
    """ARGS's knobs and the gate."""

    gate_threshold: float = knob(
        0.5, "tau: score a step only where the policy's top-1 probability <= tau (1: always, 0: never)",
        ge=0, le=1,
    )  # fmt: skip


def _build(p: Parts):
    from argsfw.decoding.gated import GatedArgsChooser, GatedScorer
    from argsfw.decoding.readout import pad_readout

    s, rm = p.s, p.decoder.rm
    scorer = None
    if s.weight != 0:
        reads = p.meter.cursors("rm", p.rows)
        scorer = pad_readout(GatedScorer(rm, p.stats, reads), rm, p.stats, True, reads)
    return scorer, GatedArgsChooser(s.weight, s.topk, float(s.gate_threshold))


def _check_models(decoder, s) -> None:
    if not decoder.shared_tokenizer:
        raise DecodeInputError(
            "args-gated needs a reward model that shares the policy's tokenizer; use "
            "args-greedy for a reward model with its own tokenizer"
        )
    if decoder.scorer_name(s) != "tree":
        # the gated scorer extends the tree-masked shared-prefix cache; an RM whose probe
        # rejected it would be scored wrongly
        raise DecodeInputError(
            f"args-gated needs the tree scorer, which {type(decoder.rm).__name__} does not pass "
            f"(probe chose {decoder.scorer_name(s)}); use args-greedy with this reward model"
        )


ARGS_GATED = Method(
    name="args-gated",
    summary="ARGS-greedy where the policy is unsure (top-1 prob <= tau), plain greedy elsewhere",
    settings=Gated,
    needs="sequence",
    guide_knob="weight",
    build=_build,
    check_models=_check_models,
    label_knobs=(("weight", "w"), ("topk", "k"), ("gate_threshold", "τ")),
    color="#ff7f0e",
    marker="P",
    curve="weight",
    counts_scored_steps=True,
)
