"""CD-FUDGE (Mudgal et al., ICML 2024): a value model V(x, y_<=t) trained on the policy's own
answers. Each step samples ``value.samples_per_prompt`` answers per prompt from the frozen
policy, labels each whole answer with the frozen sequence RM, r(x, y), and regresses V at every
prefix of the answer (the prompt alone included) towards r with the squared error: V learns the
RM reward the policy is expected to reach from each prefix. V starts as a copy of the RM.

V is a ``num_labels=1`` sequence classifier read the way Hugging Face reads one (at the last
non-pad token), so any prefix's value is its forward on that prefix; it exports as a plain HF
directory marked ``reward_kind: value``. Validation logs ``val/loss`` (all prefixes),
``val/loss_prompt`` (V of the prompt alone against the reward reached) and ``val/loss_full``
(V of the whole answer).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from argsfw.config.run_dir import RunDir
from argsfw.config.schema import JobConfig, OptimConfig
from argsfw.decoding.types import RewardKind
from argsfw.modules import StageParts
from argsfw.modules._frozen import FrozenModels
from argsfw.modules._models import save_model_dir, unwrap
from argsfw.modules._optim import adamw_with_schedule, total_optimizer_steps
from argsfw.stages.value import ValueConfig

REWARD_KIND = RewardKind.VALUE


class ValueModule(FrozenModels, L.LightningModule):
    """V trained on answers the frozen policy samples and the frozen RM labels.

    Batches come from `argsfw.data.PromptDataModule` (left-padded ``input_ids`` and
    ``attention_mask`` [B, P]).
    """

    def __init__(
        self,
        value,
        policy,
        rm,
        cfg: ValueConfig,
        optim: OptimConfig,
        pad_id: int,
        eos_id,
        seed: int = 0,
    ):
        super().__init__()
        self.model, self.cfg, self.optim = value, cfg, optim
        self.pad_id, self.eos_id, self.seed = pad_id, eos_id, seed
        self.hold_frozen(policy, rm)

    policy = property(lambda self: self.frozen(0), doc="The frozen policy that samples answers.")
    rm = property(lambda self: self.frozen(1), doc="The frozen sequence RM that labels them.")

    @torch.no_grad()
    def sample(self, batch: dict, step: int) -> tuple[list[list[int]], list[int]]:
        """The answers: ``(sequences, prompt lengths)``, prompt + answer without any padding."""
        from transformers import GenerationConfig

        policy = self.policy
        k = self.cfg.samples_per_prompt
        torch.manual_seed(self.seed * 1_000_003 + step)
        config = GenerationConfig(
            do_sample=True, temperature=self.cfg.temperature, top_k=0, top_p=1.0,
            max_new_tokens=self.cfg.max_new_tokens, pad_token_id=self.pad_id, eos_token_id=self.eos_id,
        )  # fmt: skip
        out = policy.generate(
            input_ids=batch["input_ids"].repeat_interleave(k, 0),
            attention_mask=batch["attention_mask"].repeat_interleave(k, 0),
            generation_config=config,
        )  # [B*k, P + R]
        width = batch["input_ids"].shape[1]
        seqs, plens = [], []
        for row, mask in zip(
            out.tolist(), batch["attention_mask"].repeat_interleave(k, 0).tolist()
        ):
            prompt = [t for t, m in zip(row[:width], mask) if m]
            answer = row[width:]
            if self.eos_id is not None and self.eos_id in answer:
                answer = answer[: answer.index(self.eos_id) + 1]
            seqs.append(prompt + answer)
            plens.append(len(prompt))
        return seqs, plens

    def _losses(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        from argsfw.decoding.accounting import DecodeStats
        from argsfw.decoding.scoring import reward_parts
        from argsfw.decoding.sequence_scorers import sequence_rewards

        seqs, plens = self.sample(batch, step)
        target = sequence_rewards(self.rm, seqs, DecodeStats(), batch_size=len(seqs))
        target = target.to(self.device)  # [N] r(x, y), the RM's own read
        n, width = len(seqs), max(map(len, seqs))
        ids = torch.full((n, width), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        for i, q in enumerate(seqs):
            ids[i, : len(q)] = torch.tensor(q, device=self.device)
            mask[i, : len(q)] = 1
        # V at every position: the classifier's head on each hidden state (right padding: a
        # position's value is the prefix's own forward read at its last token)
        backbone, head = reward_parts(unwrap(self.model))
        hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        values = head(hidden)[..., 0].float()  # [N, T]
        cols = torch.arange(width, device=self.device)[None]
        plen = torch.tensor(plens, device=self.device)[:, None]
        last = mask.sum(1, keepdim=True) - 1
        ends_pad = ids.gather(1, last) == self.pad_id  # EOS == pad: HF reads before it
        last = last - ends_pad.long()
        prefixes = (cols >= plen - 1) & (cols <= last)  # the prompt alone ... the whole answer
        err = (values - target[:, None]) ** 2
        rows = torch.arange(n, device=self.device)
        return {
            "loss": (err * prefixes).sum() / prefixes.sum(),
            "loss_prompt": err[rows, plen[:, 0] - 1].mean(),
            "loss_full": err[rows, last[:, 0]].mean(),
            "reward": target.mean(),
        }

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self._losses(batch, self.global_step)
        n = batch["input_ids"].shape[0]
        self.log("train/loss", out["loss"], on_step=True, prog_bar=True, batch_size=n)
        self.log("train/reward", out["reward"], on_step=True, batch_size=n)
        return out["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self._losses(batch, 10_000_019 + batch_idx)  # fixed draws: comparable across epochs
        log = dict(on_epoch=True, sync_dist=True, batch_size=batch["input_ids"].shape[0])
        for key in ("loss", "loss_prompt", "loss_full"):
            self.log(f"val/{key}", out[key], prog_bar=key == "loss", **log)

    def configure_optimizers(self) -> dict:
        return adamw_with_schedule(self.model, self.optim, total_optimizer_steps(self.trainer))


def build(job: JobConfig, run: RunDir) -> StageParts:
    """The value stage's parts. Raises `UsageError`/`ModelPathError` for bad inputs."""
    from argsfw.data import PromptDataModule
    from argsfw.modules.ppo_stage import load_models

    actor, critic, _, rm, tokenizer = load_models(job)  # V starts as the RM (PPO's critic does)
    del _
    eos = tokenizer.eos_token_id
    module = ValueModule(
        critic, actor, rm, job.value, job.optim, tokenizer.pad_token_id, eos, job.seed
    )
    datamodule = PromptDataModule(tokenizer, job.data, batch_size=job.optim.micro_batch_size)

    def export(module: ValueModule, out_dir: Path) -> None:
        save_model_dir(module.model, tokenizer, out_dir, reward_kind=REWARD_KIND)

    meta = {
        "kind": "reward_model",
        "reward_kind": REWARD_KIND,
        "base_model": job.reward_model,
        "policy": job.policy,
        "reward_model": job.reward_model,
        "tokenizer": job.model.tokenizer or job.policy,
        "vocab_size": len(tokenizer),
        "max_length": job.data.max_length,
        "value_samples_per_prompt": job.value.samples_per_prompt,
        "value_max_new_tokens": job.value.max_new_tokens,
    }
    return StageParts(module, datamodule, export, meta)
