"""GenARM's autoregressive reward model (Xu et al., ICLR 2025): a causal LM whose likelihood is the reward.

``r(x, y) = Σ_t log π_r(y_t | x, y_<t)`` over the response tokens (divided by their count with
``arm.length_normalize``), trained on preference pairs with ``−log σ(β·(r_w − r_l) − margin)``.
There is no reference model. π_r starts from a causal LM, usually the SFT policy (``policy=``),
so it shares the policy's tokenizer; at decode time its next-token log-probabilities are the
token rewards (GenARM samples from ``π_base · π_r^α``), one RM forward of one token per step.

Validation logs ``val/loss``, ``val/reward_acc`` (fraction of pairs with r_w > r_l) and
``val/reward_gap``. The export is a plain HF causal LM with ``reward_kind: arm``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from argsfw.config.run_dir import RunDir
from argsfw.config.schema import JobConfig, OptimConfig
from argsfw.decoding.types import RewardKind
from argsfw.models.reward_kind import mark_reward_kind
from argsfw.modules import StageParts
from argsfw.modules._lm_rewards import (
    both_sides,
    check_causal_lm_init,
    export_reward_lm,
    pair_datamodule,
)
from argsfw.modules._models import build_causal_lm
from argsfw.modules._optim import adamw_with_schedule, total_optimizer_steps
from argsfw.modules._top_layers import feature_pass, frozen_cache
from argsfw.rlhf.pairwise import pairwise_accuracy, reward_gap
from argsfw.rlhf.token_rewards import genarm_loss, sequence_logprob_sum
from argsfw.stages.arm import ArmConfig

REWARD_KIND = RewardKind.ARM


class ArmModule(L.LightningModule):
    """A causal LM π_r trained with `genarm_loss` on its response log-likelihoods.

    Batches come from `argsfw.modules._lm_rewards.PairCollator` (chosen / rejected ids, masks
    and response masks, [N, T]).
    """

    def __init__(
        self, model: torch.nn.Module, arm: ArmConfig, optim: OptimConfig, frozen=None, pad_id=0
    ) -> None:
        super().__init__()
        self.model = model
        self.arm, self.optim = arm, optim
        self.frozen, self.pad_id = frozen, pad_id  # model.cache_frozen: a FrozenBottomCache

    def on_fit_start(self) -> None:
        if self.frozen is not None:
            feature_pass(self, [self.frozen], self.pad_id)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, V] (from cached frozen-layer outputs with ``model.cache_frozen``)."""
        if self.frozen is not None:
            return self.frozen.logits(input_ids, attention_mask)
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def rewards(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r_chosen, r_rejected)`` [N] each, from one forward over both sides."""
        ids, mask = both_sides(batch, "input_ids"), both_sides(batch, "attention_mask")
        response, norm = both_sides(batch, "response_mask"), self.arm.length_normalize
        if self.frozen is not None:  # the head at the reply's positions only
            return self.frozen.response_logprob_sum(ids, mask, response, norm).chunk(2)
        return sequence_logprob_sum(self(ids, mask), ids, response, norm).chunk(2)

    def _loss(self, chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        return genarm_loss(chosen, rejected, self.arm.beta, self.arm.margin)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        chosen, rejected = self.rewards(batch)
        loss = self._loss(chosen, rejected)
        n = chosen.numel()
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log("train/reward_acc", pairwise_accuracy(chosen, rejected), batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        chosen, rejected = self.rewards(batch)
        log = dict(on_epoch=True, sync_dist=True, batch_size=chosen.numel())
        self.log("val/loss", self._loss(chosen, rejected), prog_bar=True, **log)
        self.log("val/reward_acc", pairwise_accuracy(chosen, rejected), prog_bar=True, **log)
        self.log("val/reward_gap", reward_gap(chosen, rejected), **log)
        self.log("val/reward_chosen", chosen.mean(), **log)

    def configure_optimizers(self) -> dict:
        return adamw_with_schedule(self.model, self.optim, total_optimizer_steps(self.trainer))


def build(job: JobConfig, run: RunDir) -> StageParts:
    """The arm stage's parts. Raises `UsageError`/`ModelPathError` for bad inputs, before loading."""
    check_causal_lm_init(job)
    model, tokenizer, meta = build_causal_lm(job)
    mark_reward_kind(model, REWARD_KIND)

    def export(module: ArmModule, out_dir: Path) -> None:
        export_reward_lm(module.model, tokenizer, out_dir, REWARD_KIND)

    meta = {
        **meta,
        "kind": "reward_model",
        "reward_kind": REWARD_KIND,
        "arm_beta": job.arm.beta,
        "arm_length_normalize": job.arm.length_normalize,
        "arm_margin": job.arm.margin,
    }
    from argsfw.data.collators import pad_id_of

    module = ArmModule(model, job.arm, job.optim, frozen_cache(job, model), pad_id_of(tokenizer))
    return StageParts(module, pair_datamodule(job, tokenizer), export, meta)
