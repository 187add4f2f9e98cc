"""Token-level reward heads: a causal LM whose raw logits are the rewards of every next token.

``r(x, y_<t, v) = M(x, y_<t).logits[-1, v]`` (no softmax), so one forward of one token per step
scores all candidates (FaRMA, Rashid et al., ICML 2025). Two ways to train it
(``token_rm.mode``), both from a causal LM, usually the SFT policy (``policy=``):

* ``bt`` — on preference pairs. The reward of a reply is the head value of its last token,
  ``r(x, y_<T, y_T)``; `farma_bt_loss` ranks chosen over rejected. `farma_consistency_loss`
  pulls every response token's value ``r(x, y_<t, y_t)`` towards ``max_v r(x, y_≤t, v)`` (the
  value of a prefix is that of its best continuation), so values read mid-response mean
  something. Both losses come from the same forward. ``schedule=sum`` (default) adds them,
  weighted, every step: the forward is paid once for both signals and the optimiser sees one
  objective. ``schedule=alternate`` applies them on alternate optimizer steps, the per-step
  analogue of FaRMA's alternating training phases (their reference scripts run whole
  Bradley-Terry and consistency epochs in turn, as separate trainer launches).
* ``distill`` — regress the head on an existing sequence RM (``token_rm.teacher_rm``). At
  ``distill_prefixes`` prefixes of every training response, the frozen policy (the initial
  model) proposes its top-k next tokens; the teacher scores all k with argsfw's shared-prefix
  tree scorer (one RM forward for k candidates); the head's values of those k tokens are fit to
  the teacher's rewards, centred per prefix (`distill_loss`). Validation reports
  ``val/top1_agree``: on held-out prefixes, how often the head's best of the policy's top-k is
  the teacher's best (``val/policy_top1_agree``: how often the policy's own top-1 is).

The export is a plain HF causal LM with ``reward_kind: token`` (and ``token_rm_mode``).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import lightning as L
import torch

from argsfw.config.run_dir import RunDir
from argsfw.config.schema import JobConfig, OptimConfig
from argsfw.decoding.types import RewardKind
from argsfw.errors import UsageError
from argsfw.models.reward_kind import mark_reward_kind
from argsfw.modules import StageParts
from argsfw.modules._frozen import FrozenModels
from argsfw.modules._lm_rewards import (
    architectures,
    both_sides,
    check_causal_lm_init,
    export_reward_lm,
    pair_datamodule,
)
from argsfw.modules._models import base_source, build_causal_lm, load_tokenizer_for
from argsfw.modules._optim import adamw_with_schedule, total_optimizer_steps
from argsfw.rlhf.pairwise import pairwise_accuracy, reward_gap
from argsfw.rlhf.token_rewards import (
    distill_loss,
    farma_bt_loss,
    farma_consistency_loss,
    last_token_values,
    scheduled_loss,
    top1_agreement,
)
from argsfw.stages.token_rm import TokenRMConfig

log = logging.getLogger(__name__)

REWARD_KIND = RewardKind.TOKEN


def prefix_positions(
    lengths: torch.Tensor, prompt_len: torch.Tensor, n: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, pos)`` [M]: up to `n` prefixes per row, each read at its last token ``pos``.

    Row b of length ``lengths[b]`` with a prompt of ``prompt_len[b]`` tokens has the prefixes
    prompt + ``y_<j`` for j = 0 .. R−1 (R response tokens; just the prompt when R = 0). With
    a `generator`, `n` distinct ones are drawn uniformly; without, `n` evenly spaced ones.
    """
    rows, pos = [], []
    for b, (length, p) in enumerate(zip(lengths.tolist(), prompt_len.tolist())):
        count = max(length - p, 1)
        if generator is not None:
            js = torch.randperm(count, generator=generator)[:n].sort().values.tolist()
        else:
            js = sorted({i * count // n for i in range(min(n, count))})
        rows += [b] * len(js)
        pos += [p + j - 1 for j in js]
    return torch.tensor(rows), torch.tensor(pos)


def left_padded_prefixes(
    ids: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefixes ``ids[rows[i], : pos[i] + 1]`` left-padded to one width: ids and mask [M, W]."""
    width = int(pos.max()) + 1
    out = torch.full((len(rows), width), pad_id, dtype=ids.dtype, device=ids.device)
    mask = torch.zeros_like(out)
    for i, (r, p) in enumerate(zip(rows.tolist(), pos.tolist())):
        out[i, width - p - 1 :] = ids[r, : p + 1]
        mask[i, width - p - 1 :] = 1
    return out, mask


class TokenRMModule(FrozenModels, L.LightningModule):
    """A causal LM whose logits are token rewards, trained as ``token_rm.mode`` says.

    Batches come from `argsfw.modules._lm_rewards.PairCollator`. In distill mode `policy`
    (frozen; None under LoRA, where the student with its adapters disabled *is* the initial
    policy) and `teacher` (frozen sequence RM) sit in a plain tuple, out of DDP, DeepSpeed and
    checkpoints, as in `argsfw.modules.ppo.PPOModule`; `_apply` moves them with the module.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TokenRMConfig,
        optim: OptimConfig,
        policy: torch.nn.Module | None = None,
        teacher: torch.nn.Module | None = None,
        pad_id: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.cfg, self.optim, self.pad_id, self.seed = cfg, optim, pad_id, seed
        self.hold_frozen(policy, teacher)

    policy = property(lambda self: self.frozen(0), doc="The frozen initial policy (or None).")
    teacher = property(lambda self: self.frozen(1), doc="The frozen sequence RM (or None).")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Head values (logits) [B, T, V]."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    # --- bt mode ---------------------------------------------------------------------------

    def _bt_terms(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(v_chosen, v_rejected, consistency)`` from one forward over both sides."""
        ids = both_sides(batch, "input_ids")
        logits = self(ids, both_sides(batch, "attention_mask"))
        values = last_token_values(logits, ids, both_sides(batch, "last"))
        consistency = farma_consistency_loss(
            logits, ids, both_sides(batch, "response_mask"), self.cfg.consistency_stop_grad
        )
        chosen, rejected = values.chunk(2)
        return chosen, rejected, consistency

    def _bt_step(self, batch: dict) -> torch.Tensor:
        chosen, rejected, consistency = self._bt_terms(batch)
        bt = farma_bt_loss(chosen, rejected, self.cfg.margin)
        # by optimizer step, so every micro-batch of one accumulated step has the same objective
        loss = scheduled_loss(
            bt, consistency, self.cfg.consistency_weight, self.cfg.schedule, self.global_step
        )
        n = chosen.numel()
        self.log("train/bt_loss", bt, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/consistency_loss", consistency, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/reward_acc", pairwise_accuracy(chosen, rejected), batch_size=n)
        return loss

    def _bt_validation(self, batch: dict) -> None:
        chosen, rejected, consistency = self._bt_terms(batch)
        log = dict(on_epoch=True, sync_dist=True, batch_size=chosen.numel())
        self.log("val/loss", farma_bt_loss(chosen, rejected, self.cfg.margin), prog_bar=True, **log)
        self.log("val/reward_acc", pairwise_accuracy(chosen, rejected), prog_bar=True, **log)
        self.log("val/reward_gap", reward_gap(chosen, rejected), **log)
        self.log("val/consistency_loss", consistency, **log)

    # --- distill mode ----------------------------------------------------------------------

    @torch.no_grad()
    def distill_targets(self, batch: dict, generator: torch.Generator | None) -> dict:
        """Prefixes of the batch's responses, the policy's top-k there and the teacher's rewards.

        Returns ``rows``/``pos`` [M] (row of the stacked chosen+rejected batch and the position
        of each prefix's last token), ``cands`` [M, k] (policy top-k, best first) and
        ``target`` [M, k] (teacher rewards of prefix + each candidate, float32).
        """
        from argsfw.decoding.accounting import DecodeStats
        from argsfw.decoding.scoring import SharedTokenizerScorer

        ids = both_sides(batch, "input_ids")
        mask = both_sides(batch, "attention_mask")
        prompt_len = batch["prompt_len"].repeat(2)
        rows, pos = prefix_positions(
            mask.sum(1).cpu(), prompt_len.cpu(), self.cfg.distill_prefixes, generator
        )
        rows, pos = rows.to(ids.device), pos.to(ids.device)
        if self.policy is not None:
            logits = self.policy(input_ids=ids, attention_mask=mask).logits
        else:  # LoRA: the initial policy is the student without its adapters
            with self.model.disable_adapter():
                logits = self.model(input_ids=ids, attention_mask=mask).logits
        cands = logits[rows, pos].topk(self.cfg.distill_topk, dim=-1).indices  # [M, k]
        scorer = SharedTokenizerScorer(self.teacher, DecodeStats())
        scorer.start(*left_padded_prefixes(ids, rows, pos, self.pad_id))
        # why clone: the scorer runs under inference_mode; its tensors cannot enter autograd
        target = scorer.score(cands).clone()
        return {"rows": rows, "pos": pos, "cands": cands, "target": target}

    def _distill_terms(self, batch: dict, generator) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.distill_targets(batch, generator)
        logits = self(both_sides(batch, "input_ids"), both_sides(batch, "attention_mask"))
        pred = logits[t["rows"], t["pos"]].float().gather(-1, t["cands"])  # [M, k]
        return pred, t["target"]

    def _generator(self, batch_idx: int) -> torch.Generator:
        # why seeded from the step: a resumed run draws the same prefixes as an unbroken one
        return torch.Generator().manual_seed(
            self.seed * 1_000_003 + self.global_step * 1009 + batch_idx
        )

    def _distill_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        pred, target = self._distill_terms(batch, self._generator(batch_idx))
        loss = distill_loss(pred, target, self.cfg.distill_center)
        self.log("train/top1_agree", top1_agreement(pred, target), batch_size=pred.shape[0])
        return loss

    def _distill_validation(self, batch: dict) -> None:
        pred, target = self._distill_terms(batch, None)
        log = dict(on_epoch=True, sync_dist=True, batch_size=pred.shape[0])
        self.log("val/loss", distill_loss(pred, target, self.cfg.distill_center), **log)
        self.log("val/top1_agree", top1_agreement(pred, target), prog_bar=True, **log)
        # the policy's own choice (candidate 0, its top-1) against the teacher's: a baseline
        policy_pick = (target.argmax(-1) == 0).float().mean()
        self.log("val/policy_top1_agree", policy_pick, **log)

    # --- Lightning -------------------------------------------------------------------------

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.cfg.mode == "bt":
            loss = self._bt_step(batch)
        else:
            loss = self._distill_step(batch, batch_idx)
        n = batch["chosen_input_ids"].size(0)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if self.cfg.mode == "bt":
            self._bt_validation(batch)
        else:
            self._distill_validation(batch)

    def configure_optimizers(self) -> dict:
        return adamw_with_schedule(self.model, self.optim, total_optimizer_steps(self.trainer))


def check_teacher(spec: str) -> None:
    """Refuse a teacher that is not a sequence classifier (before loading). Raises `UsageError`."""
    archs = architectures(spec, "token_rm.teacher_rm")
    if archs is not None and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise UsageError(
            f"token_rm.teacher_rm={spec!r} is not a sequence reward model ({', '.join(archs) or 'no architectures'}); "
            "name a *_rm run dir such as runs/tiny_rm"
        )


def check_teacher_tokenizer(job: JobConfig) -> None:
    """Refuse a teacher whose tokenizer differs from the policy's (tokenizers only, no model)."""
    from argsfw.models import load_tokenizer
    from argsfw.models.preflight import check_tokenizer_compat

    spec = job.token_rm.teacher_rm
    compat = check_tokenizer_compat(
        load_tokenizer_for(job, base_source(job)),
        load_tokenizer(spec, "token_rm.teacher_rm"),
        ("policy", "teacher RM"),
    )
    if not compat.same:
        raise UsageError(
            f"token_rm.teacher_rm={spec!r} does not share the policy's tokenizer ({compat}); "
            "distillation scores the policy's candidate tokens with the teacher directly: pass a "
            "teacher RM trained with the policy's tokenizer"
        )


def build(job: JobConfig, run: RunDir) -> StageParts:
    """The token_rm stage's parts. Raises `UsageError`/`ModelPathError` for bad inputs, before loading."""
    from peft import PeftModel

    from argsfw.models import load_reward_model

    cfg = job.token_rm
    check_causal_lm_init(job)
    if cfg.mode == "distill":
        check_teacher(cfg.teacher_rm)
        check_teacher_tokenizer(job)
    model, tokenizer, meta = build_causal_lm(job)
    mark_reward_kind(model, REWARD_KIND)
    policy = teacher = None
    if cfg.mode == "distill":
        teacher = load_reward_model(cfg.teacher_rm, dtype=job.model.dtype, tokenizer=tokenizer)
        if not isinstance(model, PeftModel):
            policy = copy.deepcopy(model)
    module = TokenRMModule(
        model, cfg, job.optim, policy, teacher, pad_id=tokenizer.pad_token_id, seed=job.seed
    )

    def export(module: TokenRMModule, out_dir: Path) -> None:
        export_reward_lm(module.model, tokenizer, out_dir, REWARD_KIND)

    meta = {**meta, "kind": "reward_model", "reward_kind": REWARD_KIND, "token_rm_mode": cfg.mode}
    if cfg.mode == "bt":
        meta.update(
            token_rm_consistency_weight=cfg.consistency_weight,
            token_rm_schedule=cfg.schedule,
            token_rm_consistency_stop_grad=cfg.consistency_stop_grad,
        )
    else:
        meta.update(
            teacher_rm=cfg.teacher_rm,
            token_rm_distill_topk=cfg.distill_topk,
            token_rm_distill_prefixes=cfg.distill_prefixes,
        )
    return StageParts(module, pair_datamodule(job, tokenizer), export, meta)
