"""Methods guided by a token-level RM (a causal LM with the policy's vocabulary), one RM token per
generated token (see `argsfw.decoding.token_level`):

* GenARM: sample ``pi_base * pi_r^alpha`` (the next-token logits ``(log pi_base + alpha *
  log pi_r) / (1 + alpha)`` at temperature ``1 / (1 + alpha)`` unless T is given), or its argmax;
* token-rm: the ARGS rules with ``r(v)`` read from a token-level head (FaRMA-style), greedy or
  sampled.

Either also reads DPO's implicit reward ``beta * (log pi_dpo - log pi_ref)`` as its guide
(``reward_model=<a DPO run>``, `argsfw.decoding.implicit`).
"""

from __future__ import annotations

from dataclasses import dataclass

from argsfw.decoding.config import knob
from argsfw.decoding.methods.args import Args
from argsfw.decoding.methods.baselines import Sampling
from argsfw.decoding.registry import Method, Parts


@dataclass
class GenArmGreedy:
    """GenARM's strength of the autoregressive RM."""

    alpha: float = knob(
        1.0, "logits (log pi_base + alpha * log pi_r) / (1 + alpha); 0 reads no guide", gt=-1
    )


@dataclass
class GenArm(GenArmGreedy):
    """GenARM sampled."""

    temperature: float | None = knob(
        None, "sampling temperature after the 1/(1+alpha); null: GenARM's 1 / (1 + alpha)", gt=0,
        also=(None,),
    )  # fmt: skip


@dataclass
class TokenRmSampled(Sampling, Args):
    """token-rm sampled: ARGS's knobs and a temperature."""


def _genarm(greedy: bool):
    def build(p: Parts):
        from argsfw.api import token_scorer
        from argsfw.decoding.token_level import GenARMChooser

        s = p.s
        scorer = token_scorer(p) if s.alpha != 0 else None
        n_tokens = len(p.decoder.tokenizer)
        return scorer, GenARMChooser(s.alpha, greedy, 1.0 if greedy else s.temperature, n_tokens)

    return build


def _token_rm(greedy: bool):
    def build(p: Parts):
        from argsfw.api import token_scorer
        from argsfw.decoding.search import ArgsChooser

        s = p.s
        scorer = token_scorer(p, candidates_only=True) if s.weight != 0 else None
        return scorer, ArgsChooser(
            s.weight, s.topk, greedy, 1.0 if greedy else s.temperature, None, None
        )

    return build


def _genarm_temperature(s) -> float:
    # GenARM's rule: its logits are divided by 1 + alpha, so T = 1 / (1 + alpha) samples the
    # paper's pi_decode = pi_base * pi_r^alpha at temperature 1
    return 1.0 / (1.0 + float(s.alpha))


def _temperature(s) -> float:
    return float(s.temperature) if s.temperature is not None else _genarm_temperature(s)


GENARM = Method(
    name="genarm",
    summary="GenARM: sample pi_base * pi_arm^alpha with an autoregressive RM (reward_kind arm)",
    settings=GenArm,
    needs="arm",
    guide_knob="alpha",
    build=_genarm(greedy=False),
    samples=True,
    default_temperature=_genarm_temperature,
    label=lambda s: f"genarm alpha={s.alpha:g} T={_temperature(s):g}",
    color="#8c564b",
    marker="h",
    curve="alpha",
)
GENARM_GREEDY = Method(
    name="genarm-greedy",
    summary="GenARM's argmax: (log pi_base + alpha * log pi_arm) / (1 + alpha), greedy",
    settings=GenArmGreedy,
    needs="arm",
    guide_knob="alpha",
    build=_genarm(greedy=True),
    label=lambda s: f"genarm-greedy alpha={s.alpha:g}",
    color="#bc8f8f",
    marker="H",
    curve="alpha",
)
TOKEN_RM = Method(
    name="token-rm",
    summary="ARGS-greedy with r(v) read from a token-level head (reward_kind token), one RM token per step",
    settings=Args,
    needs="token",
    guide_knob="weight",
    build=_token_rm(greedy=True),
    label_knobs=(("weight", "w"), ("topk", "k")),
    color="#2f4f4f",
    marker="p",
    curve="weight",
)
TOKEN_RM_STOCHASTIC = Method(
    name="token-rm-stochastic",
    summary="token-rm sampled: softmax((logit + w * head) / T) over the top k",
    settings=TokenRmSampled,
    needs="token",
    guide_knob="weight",
    build=_token_rm(greedy=False),
    samples=True,
    label_knobs=(("weight", "w"), ("topk", "k")),
    color="#556b2f",
    marker="<",
    curve="weight",
)
