"""Supervised fine-tuning: causal-LM loss on prompt + response (response tokens only by default).

`build(job, run)` returns the `StageParts` `argsfw.fit` trains: an `SFTModule` around a
transformers causal LM (optionally with LoRA), the data engineer's `SFTDataModule`, and an
export that writes the policy as a plain HF directory (LoRA merged).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from argsfw.config.run_dir import RunDir
from argsfw.config.schema import JobConfig, OptimConfig
from argsfw.modules import StageParts
from argsfw.modules._models import build_causal_lm, save_model_dir
from argsfw.modules._optim import adamw_with_schedule, total_optimizer_steps
from argsfw.rlhf.lm import causal_lm_loss


class SFTModule(L.LightningModule):
    """A causal LM trained with `causal_lm_loss`.

    Batches are ``input_ids``/``attention_mask``/``labels`` [B, T] (labels -100 where no loss).
    Logs ``train/loss`` per step and ``val/loss`` (mean over validation batches) per epoch.
    """

    def __init__(self, model: torch.nn.Module, optim: OptimConfig) -> None:
        super().__init__()
        self.model = model
        self.optim = optim

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, V]."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])  # [B, T, V]
        return causal_lm_loss(logits, batch["labels"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        n = batch["input_ids"].size(0)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self._loss(batch)
        n = batch["input_ids"].size(0)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n)

    def configure_optimizers(self) -> dict:
        return adamw_with_schedule(self.model, self.optim, total_optimizer_steps(self.trainer))


def build(job: JobConfig, run: RunDir) -> StageParts:
    """The SFT stage's parts. Raises `ModelPathError`/`UsageError` for bad model inputs."""
    from argsfw.data import SFTDataModule

    model, tokenizer, meta = build_causal_lm(job)
    datamodule = SFTDataModule(
        tokenizer,
        job.data,
        batch_size=job.optim.micro_batch_size,
        target=job.sft.target,
        loss_on_prompt=job.sft.loss_on_prompt,
    )

    def export(module: SFTModule, out_dir: Path) -> None:
        save_model_dir(module.model, tokenizer, out_dir)

    meta = {**meta, "kind": "policy", "sft_target": job.sft.target}
    return StageParts(SFTModule(model, job.optim), datamodule, export, meta)
