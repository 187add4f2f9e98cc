"""Reward-model training: pairwise Bradley-Terry loss on chosen vs rejected, optional prefixes.

ARGS scores *partial* responses, so ``rm.prefix_cuts=K`` also trains on K response-prefix cut
points of every pair (the collator cuts chosen and rejected at the same relative points).
Validation always reports whole-response accuracy (``val/reward_acc``) and gap, and accuracy
on prefixes cut at 1/4, 2/4, 3/4 (``val/prefix_reward_acc``, ``rm.val_prefix_cuts``, 0 to
save the time), whatever the training cuts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch

from argsfw.config.run_dir import RunDir
from argsfw.config.schema import JobConfig, OptimConfig
from argsfw.decoding.types import RewardKind
from argsfw.modules import StageParts
from argsfw.modules._models import build_reward_model, save_model_dir
from argsfw.modules._optim import adamw_with_schedule, total_optimizer_steps
from argsfw.modules._pair_verdicts import PairVerdicts
from argsfw.modules._top_layers import feature_pass, frozen_cache
from argsfw.rlhf.pairwise import bradley_terry_loss, pairwise_accuracy, reward_gap

log = logging.getLogger(__name__)

REWARD_KIND = RewardKind.SEQUENCE  # meta.json reward_kind: one scalar per whole sequence


class RewardModule(L.LightningModule):
    """A ``num_labels=1`` sequence classifier trained on preference pairs.

    Batches (see `argsfw.data.RMCollator`): ``chosen_input_ids``/``chosen_attention_mask``/
    ``rejected_input_ids``/``rejected_attention_mask`` [N, T] and ``cut_fraction`` [N]
    (1.0 for whole responses), N = pairs × (1 + cuts).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optim: OptimConfig,
        margin: float = 0.0,
        frozen=None,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.optim = optim
        self.margin = margin
        # model.cache_frozen: a FrozenBottomCache (the bottom's outputs read from the store)
        self.frozen = frozen
        self.pad_id = pad_id
        self.verdicts = PairVerdicts()

    def on_fit_start(self) -> None:
        if self.frozen is not None:
            feature_pass(self, [self.frozen], self.pad_id)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rewards [B]: the scalar head at each row's last non-pad token (the model's own forward,
        or the same read on cached frozen-layer outputs with ``model.cache_frozen``)."""
        if self.frozen is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]
        return self.frozen.rewards(input_ids, attention_mask)

    def rewards(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards of the chosen and of the rejected rows [N] each, in one forward over both."""
        ids = torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]])
        mask = torch.cat([batch["chosen_attention_mask"], batch["rejected_attention_mask"]])
        rewards = self(ids, mask)
        n = batch["chosen_input_ids"].size(0)
        return rewards[:n], rewards[n:]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        chosen, rejected = self.rewards(batch)
        loss = bradley_terry_loss(chosen, rejected, self.margin)
        n = chosen.numel()
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log(
            "train/reward_acc", pairwise_accuracy(chosen, rejected), on_step=True, batch_size=n
        )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        chosen, rejected = self.rewards(batch)
        whole = batch["cut_fraction"] >= 1.0  # [N]
        c, r = chosen[whole], rejected[whole]
        n = c.numel()
        log = dict(on_epoch=True, sync_dist=True, batch_size=n)
        self.log("val/loss", bradley_terry_loss(c, r, self.margin), prog_bar=True, **log)
        self.log("val/reward_acc", pairwise_accuracy(c, r), prog_bar=True, **log)
        self.log("val/reward_gap", reward_gap(c, r), **log)
        self.log("val/reward_chosen", c.mean(), **log)
        self.verdicts.add(c, r, batch["length_rule"][whole])
        if (~whole).any():
            pc, pr = chosen[~whole], rejected[~whole]
            self.log(
                "val/prefix_reward_acc",
                pairwise_accuracy(pc, pr),
                on_epoch=True,
                sync_dist=True,
                batch_size=pc.numel(),
            )

    def on_validation_epoch_end(self) -> None:
        self.verdicts.log(self)

    def configure_optimizers(self) -> dict:
        return adamw_with_schedule(self.model, self.optim, total_optimizer_steps(self.trainer))


def build(job: JobConfig, run: RunDir) -> StageParts:
    """The reward stage's parts. Raises `ModelPathError`/`UsageError` for bad model inputs."""
    from argsfw.data import RMCollator, RMDataModule
    from argsfw.data.collators import pad_id_of

    model, tokenizer, meta = build_reward_model(job)
    datamodule = RMDataModule(
        tokenizer, job.data, batch_size=job.optim.micro_batch_size, prefix_cuts=job.rm.prefix_cuts
    )
    # validation also scores prefixes (RMDataModule's own eval collator has none)
    datamodule.eval_collate_fn = RMCollator(tokenizer, job.rm.val_prefix_cuts)

    def export(module: RewardModule, out_dir: Path) -> None:
        # the kind of reward model, also in config.json for directories used without meta.json
        save_model_dir(module.model, tokenizer, out_dir, reward_kind=REWARD_KIND)

    meta = {
        **meta,
        "kind": "reward_model",
        "reward_kind": REWARD_KIND,
        "rm_margin": job.rm.margin,
        "rm_prefix_cuts": job.rm.prefix_cuts,
        "rm_init_from_policy": job.rm.init_from_policy,
    }
    module = RewardModule(
        model, job.optim, job.rm.margin, frozen_cache(job, model), pad_id_of(tokenizer)
    )
    return StageParts(module, datamodule, export, meta)
