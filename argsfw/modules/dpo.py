"""The DPO LightningModule: the policy trained with `argsfw.rlhf.dpo.dpo_loss` on preference
pairs, the reference π_ref its frozen initial self.

A completion is the reply followed by the tokenizer's EOS, as in the DPO authors' code and TRL's
``DPOTrainer``: ``log π(y|x)`` sums the reply's tokens and ``log π(EOS | x, y)``. (The reward
model's convention differs on purpose: ARGS reads partial replies, which end in no EOS.)

The reference is a frozen copy kept out of DDP, DeepSpeed and checkpoints (as the PPO and
token-RM modules keep theirs); under LoRA there is no copy: the policy with its adapters
disabled *is* π_ref. Validation logs ``val/loss``, ``val/reward_acc`` (pairs whose implicit
reward ranks the chosen reply higher), ``val/reward_gap`` and ``val/kl_chosen`` (mean
log π − log π_ref of the chosen replies). The export is a plain HF causal LM, like SFT's.
"""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import torch

from argsfw.config.run_dir import RunDir
from argsfw.config.schema import JobConfig, OptimConfig
from argsfw.modules import StageParts
from argsfw.modules._frozen import FrozenModels
from argsfw.modules._lm_rewards import both_sides, check_causal_lm_init, pair_datamodule
from argsfw.modules._models import build_causal_lm, save_model_dir
from argsfw.modules._optim import adamw_with_schedule, total_optimizer_steps
from argsfw.modules._pair_verdicts import PairVerdicts
from argsfw.modules._top_layers import feature_pass, frozen_cache
from argsfw.rlhf.dpo import dpo_loss
from argsfw.rlhf.pairwise import pairwise_accuracy, reward_gap
from argsfw.rlhf.token_rewards import sequence_logprob_sum
from argsfw.stages.dpo import DPOConfig


class DPOModule(FrozenModels, L.LightningModule):
    """Batches come from `argsfw.modules._lm_rewards.PairCollator` ([N, T] per side)."""

    def __init__(
        self,
        model: torch.nn.Module,
        reference: torch.nn.Module | None,
        dpo: DPOConfig,
        optim: OptimConfig,
        frozen: tuple | None = None,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.model, self.dpo, self.optim = model, dpo, optim
        self.hold_frozen(reference)
        self.verdicts = PairVerdicts()
        # model.cache_frozen: FrozenBottomCaches of the policy and of its reference (None under
        # LoRA: the policy's cache with adapters off), one store: the bottom is theirs alike
        self.caches, self.pad_id = frozen, pad_id

    def on_fit_start(self) -> None:
        if self.caches is not None:
            feature_pass(self, [c for c in self.caches if c is not None], self.pad_id)

    reference = property(lambda self: self.frozen(0), doc="The frozen π_ref (None under LoRA).")

    def _logps(self, model, ids, mask, response, cache=None) -> torch.Tensor:
        if cache is not None:  # the head at the reply's positions only
            return cache.response_logprob_sum(ids, mask, response)
        logits = model(input_ids=ids, attention_mask=mask).logits
        return sequence_logprob_sum(logits, ids, response)

    def terms(self, batch: dict[str, torch.Tensor]):
        """``(loss, reward_chosen, reward_rejected, log-ratio of the chosen)``, [N] rewards."""
        ids, mask = both_sides(batch, "input_ids"), both_sides(batch, "attention_mask")
        response = both_sides(batch, "response_mask")
        mine, theirs = self.caches or (None, None)
        policy = self._logps(self.model, ids, mask, response, mine)
        ref_model = self.reference
        with torch.no_grad():
            if ref_model is None:  # LoRA: the base without adapters is the reference
                with self.model.disable_adapter():
                    ref = self._logps(self.model, ids, mask, response, mine)
            else:
                ref = self._logps(ref_model, ids, mask, response, theirs)
        pc, pr = policy.chunk(2)
        rc, rr = ref.chunk(2)
        loss, r_w, r_l = dpo_loss(pc, pr, rc, rr, self.dpo.beta, self.dpo.label_smoothing)
        return loss, r_w, r_l, (pc - rc).detach()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, r_w, r_l, _ = self.terms(batch)
        n = r_w.numel()
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log("train/reward_acc", pairwise_accuracy(r_w, r_l), batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, r_w, r_l, kl = self.terms(batch)
        log = dict(on_epoch=True, sync_dist=True, batch_size=r_w.numel())
        self.log("val/loss", loss, prog_bar=True, **log)
        self.log("val/reward_acc", pairwise_accuracy(r_w, r_l), prog_bar=True, **log)
        self.log("val/reward_gap", reward_gap(r_w, r_l), **log)
        self.log("val/kl_chosen", kl.mean(), **log)
        self.verdicts.add(r_w, r_l, batch["length_rule"])

    def on_validation_epoch_end(self) -> None:
        self.verdicts.log(self)

    def configure_optimizers(self) -> dict:
        return adamw_with_schedule(self.model, self.optim, total_optimizer_steps(self.trainer))


def build(job: JobConfig, run: RunDir) -> StageParts:
    """The dpo stage's parts. Raises `UsageError`/`ModelPathError` for bad inputs, before loading."""
    from peft import PeftModel

    from argsfw.data.collators import pad_id_of

    check_causal_lm_init(job)
    model, tokenizer, meta = build_causal_lm(job)
    reference = None if isinstance(model, PeftModel) else copy.deepcopy(model)

    def export(module: DPOModule, out_dir: Path) -> None:
        save_model_dir(module.model, tokenizer, out_dir)

    meta = {
        **meta,
        "kind": "policy",
        "dpo_beta": job.dpo.beta,
        "dpo_label_smoothing": job.dpo.label_smoothing,
    }
    caches = None
    policy_cache = frozen_cache(job, model)
    if policy_cache is not None:
        ref_cache = None if reference is None else frozen_cache(job, reference, policy_cache.store)
        caches = (policy_cache, ref_cache)
    module = DPOModule(model, reference, job.dpo, job.optim, caches, pad_id_of(tokenizer))
    # as the DPO authors' code and TRL's DPOTrainer: the completion is the reply and its EOS, so
    # log π(y|x) includes log π(EOS | x, y) and when to stop gets the preference signal too
    return StageParts(module, pair_datamodule(job, tokenizer, add_eos=True), export, meta)
