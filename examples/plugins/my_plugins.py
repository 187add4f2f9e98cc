"""A decoding method and a fit stage of one's own, used by argsfw without any edit to argsfw.

Put this folder on PYTHONPATH and name them by import path:

    decode.method=my_plugins:ETA_ARGS   (predict; knobs from decode.options.*)
    stage: my_plugins:HINGE_RM          (a fit recipe; settings in its own section, hinge_rm:)

See README.md beside this file for the commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from argsfw.decoding.registry import Method, Parts
from argsfw.errors import ConfigError
from argsfw.stages import Stage

# --------------------------------------------------------------------------- a decoding method


@dataclass
class EtaOptions:
    """eta-args's own knob (decode.options.eta)."""

    eta: float = 0.1  # candidates: the top-k tokens with probability >= eta * the top token's

    def __post_init__(self) -> None:
        if not 0 <= self.eta <= 1:
            raise ValueError(f"eta={self.eta} must be in [0, 1]")


class EtaArgsChooser:
    """ARGS-greedy over a dynamic candidate set: of the policy's top k, only the tokens within a
    factor eta of the most likely one compete on logit + w * r (the rest can never be chosen).
    Follows `argsfw.decoding.registry.Chooser`."""

    def __init__(self, weight: float, topk: int, eta: float):
        self.weight, self.topk, self.eta = weight, topk, eta

    def __call__(self, logits, scorer, ctx):
        import math

        top, cands = logits.topk(self.topk, dim=-1)  # [B, k]
        keep = top >= top[:, :1] + math.log(max(self.eta, 1e-30))  # p(v) >= eta * p(top-1)
        scores, rewards = top, None
        if scorer is not None and self.weight != 0:
            rewards = scorer.score(cands)  # [B, k]
            scores = top + self.weight * rewards
        idx = scores.masked_fill(~keep, float("-inf")).argmax(-1)  # [B]
        chosen = rewards.gather(1, idx[:, None])[:, 0] if rewards is not None else None
        return cands.gather(1, idx[:, None])[:, 0], chosen


def _build_eta(p: Parts):
    """The shared-prefix cached scorer the engine's probe picked for this RM, and the chooser."""
    from argsfw.decoding.probe import build_scorer

    s, d = p.s, p.decoder
    opts = ETA_ARGS.option_values(s)
    scorer = None
    if s.weight != 0:
        p.stats.scorer = d.scorer_name(s)
        scorer = build_scorer(p.stats.scorer, d.scorer_spec, p.stats)
    return scorer, EtaArgsChooser(s.weight, s.topk, opts.eta)


ETA_ARGS = Method(
    name="eta-args",
    summary="ARGS-greedy among the top-k tokens within a factor eta of the policy's best",
    knobs=("weight", "topk"),
    needs="sequence",
    guide_knob="weight",
    build=_build_eta,
    options=EtaOptions,
    label=lambda s: (
        f"eta-args w={s.weight:g} k={s.topk} eta={(getattr(s, 'options', None) or {}).get('eta', 0.1):g}"
    ),
    color="#7b68ee",
    marker="*",
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
    """Reuse argsfw's reward-model pieces; only the loss is new."""
    import torch

    from argsfw.data import RMCollator, RMDataModule
    from argsfw.modules import StageParts
    from argsfw.modules._models import build_reward_model, save_model_dir, unwrap
    from argsfw.modules.reward import RewardModule
    from argsfw.rlhf.pairwise import pairwise_accuracy

    margin = job.hinge_rm.margin

    class HingeRewardModule(RewardModule):
        def training_step(self, batch, batch_idx):
            chosen, rejected = self._rewards(batch)
            loss = torch.relu(margin - (chosen - rejected)).mean()
            n = chosen.numel()
            self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=n)
            self.log("train/reward_acc", pairwise_accuracy(chosen, rejected), batch_size=n)
            return loss

    model, tokenizer, meta = build_reward_model(job)
    datamodule = RMDataModule(tokenizer, job.data, batch_size=job.optim.micro_batch_size)
    datamodule.eval_collate_fn = RMCollator(tokenizer, 0)

    def export(module, out_dir):
        unwrap(module.model).config.argsfw_reward_kind = "sequence"
        save_model_dir(module.model, tokenizer, out_dir)

    meta = {**meta, "kind": "reward_model", "reward_kind": "sequence", "hinge_margin": margin}
    return StageParts(HingeRewardModule(model, job.optim), datamodule, export, meta)


HINGE_RM = Stage(
    name="hinge_rm",
    entry="fit",
    summary="sequence RM with the hinge loss max(0, margin - (r_chosen - r_rejected))",
    config=HingeRMConfig,
    build=build_hinge_rm,
    makes="reward_model:sequence",
)
