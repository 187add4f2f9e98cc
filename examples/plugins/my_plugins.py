"""Decoding methods and a fit stage of one's own, used by argsfw without any edit to argsfw.

Put this folder on PYTHONPATH and name them by import path; set their knobs like any method's:

    decode.method=my_plugins:ETA_ARGS decode.eta=0.2          (predict)
    decode.method=my_plugins:REP_ARGS decode.rep_penalty=2    (predict)
    stage: my_plugins:HINGE_RM                                (a fit recipe; settings in hinge_rm:)

Everything here comes from `argsfw.api`, the public API for authors. See README.md beside this
file for the commands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from argsfw.api import (
    VOCAB,
    ConfigError,
    Method,
    Parts,
    RewardKind,
    Stage,
    build_reward_model,
    knob,
    reward_datamodule,
    save_model,
    sequence_scorer,
)

# --------------------------------------------------------------------------- decoding methods


@dataclass
class EtaKnobs:
    """eta-args's knobs: ARGS's w and k, and eta (set as decode.weight, decode.topk, decode.eta)."""

    weight: float = knob(1.5, "w in logit(v) + w * r([x, v]); 0 reads no guide")
    topk: int = knob(10, "k candidates per step", ge=1, le=VOCAB)
    eta: float = knob(0.1, "keep the top-k tokens with p(v) >= eta * p(top-1)", ge=0, le=1)


class EtaArgsChooser:
    """ARGS-greedy over a dynamic candidate set: of the policy's top k, only the tokens within a
    factor eta of the most likely one compete on logit + w * r (the rest can never be chosen)."""

    def __init__(self, weight: float, topk: int, eta: float):
        self.weight, self.topk, self.eta = weight, topk, eta

    def __call__(self, logits, scorer, ctx):
        top, cands = logits.topk(self.topk, dim=-1)  # [B, k]
        keep = top >= top[:, :1] + math.log(max(self.eta, 1e-30))  # p(v) >= eta * p(top-1)
        scores, rewards = top, None
        if scorer is not None:
            rewards = scorer.score(cands)  # [B, k]
            scores = top + self.weight * rewards
        idx = scores.masked_fill(~keep, float("-inf")).argmax(-1)  # [B]
        chosen = rewards.gather(1, idx[:, None])[:, 0] if rewards is not None else None
        return cands.gather(1, idx[:, None])[:, 0], chosen


def _build_eta(p: Parts):
    """The sequence RM's scorer for these settings (none at w=0), and the chooser."""
    s = p.s
    scorer = sequence_scorer(p) if s.weight != 0 else None
    return scorer, EtaArgsChooser(s.weight, s.topk, s.eta)


ETA_ARGS = Method(
    name="eta-args",
    summary="ARGS-greedy among the top-k tokens within a factor eta of the policy's best",
    settings=EtaKnobs,
    needs="sequence",
    guide_knob="weight",
    build=_build_eta,
    label_knobs=(("weight", "w"), ("topk", "k"), ("eta", "eta")),
    color="#7b68ee",
    marker="*",
    curve="weight",
    counts_scored_steps=True,
)


@dataclass
class RepKnobs:
    """rep-args's knobs: ARGS's w and k, and a repetition penalty."""

    weight: float = knob(1.5, "w in logit(v) + w * r([x, v]); 0 reads no guide")
    topk: int = knob(10, "k candidates per step", ge=1, le=VOCAB)
    rep_penalty: float = knob(0.0, "subtracted from a candidate's score per earlier use", ge=0)


class RepArgsChooser:
    """ARGS-greedy minus ``rep_penalty`` times the times the row already generated the candidate:
    the step context carries each row's generated tokens, so it keeps no state of its own."""

    def __init__(self, weight: float, topk: int, rep_penalty: float):
        self.weight, self.topk, self.rep_penalty = weight, topk, rep_penalty

    def __call__(self, logits, scorer, ctx):
        import torch

        top, cands = logits.topk(self.topk, dim=-1)  # [B, k]
        rewards = scorer.score(cands) if scorer is not None else None
        scores = top + self.weight * rewards if rewards is not None else top
        if self.rep_penalty:
            uses = torch.tensor(
                [[row.count(v) for v in c] for row, c in zip(ctx.generated, cands.tolist())],
                dtype=scores.dtype, device=scores.device,
            )  # fmt: skip
            scores = scores - self.rep_penalty * uses
        idx = scores.argmax(-1)
        chosen = rewards.gather(1, idx[:, None])[:, 0] if rewards is not None else None
        return cands.gather(1, idx[:, None])[:, 0], chosen


def _build_rep(p: Parts):
    s = p.s
    scorer = sequence_scorer(p) if s.weight != 0 else None
    return scorer, RepArgsChooser(s.weight, s.topk, s.rep_penalty)


REP_ARGS = Method(
    name="rep-args",
    summary="ARGS-greedy with a repetition penalty on candidates the row already generated",
    settings=RepKnobs,
    needs="sequence",
    guide_knob="weight",
    build=_build_rep,
    label_knobs=(("weight", "w"), ("topk", "k"), ("rep_penalty", "rep")),
    curve="weight",
    counts_scored_steps=True,
)

# --------------------------------------------------------------------------- a fit stage


@dataclass
class HingeRMConfig:
    """A reward model trained with the hinge loss max(0, margin - (r_chosen - r_rejected))."""

    margin: float = 1.0

    def __post_init__(self) -> None:
        if not self.margin > 0:
            raise ConfigError(f"hinge_rm.margin={self.margin} must be > 0")


def build_hinge_rm(job, run):
    """argsfw's reward-model pieces from the public API; only the loss is new."""
    import torch

    from argsfw.api import RewardModule, StageParts

    margin = job.hinge_rm.margin

    class HingeRewardModule(RewardModule):
        def training_step(self, batch, batch_idx):
            chosen, rejected = self.rewards(batch)
            loss = torch.relu(margin - (chosen - rejected)).mean()
            n = chosen.numel()
            self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=n)
            self.log("train/reward_acc", (chosen > rejected).float().mean(), batch_size=n)
            return loss

    model, tokenizer, meta = build_reward_model(job)

    def export(module, out_dir):
        save_model(module.model, tokenizer, out_dir, reward_kind=RewardKind.SEQUENCE)

    meta = {
        **meta,
        "kind": "reward_model",
        "reward_kind": RewardKind.SEQUENCE,
        "hinge_margin": margin,
    }
    module = HingeRewardModule(model, job.optim)
    return StageParts(module, reward_datamodule(job, tokenizer), export, meta)


HINGE_RM = Stage(
    name="hinge_rm",
    entry="fit",
    summary="sequence RM with the hinge loss max(0, margin - (r_chosen - r_rejected))",
    config=HingeRMConfig,
    build=build_hinge_rm,
    makes="reward_model:sequence",
)
