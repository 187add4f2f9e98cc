"""The optimizer and schedule every automatically optimised stage uses (`OptimConfig`)."""

from __future__ import annotations

import math

import torch


def adamw_with_schedule(model: torch.nn.Module, cfg, total_steps: int) -> dict:
    """``configure_optimizers`` result: torch AdamW over trainable parameters + a per-step schedule.

    Weight decay applies to matrices only (not biases and norms). A plain torch AdamW rather
    than DeepSpeed's fused one: it needs no C++ op build, and DeepSpeed accepts it (ZeRO
    shards its states all the same). ``total_steps`` is the number of optimizer steps.
    """
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=cfg.lr, betas=tuple(cfg.betas)
    )
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[
        cfg.scheduler
    ]
    scheduler = get_scheduler(
        name,
        optimizer,
        num_warmup_steps=cfg.warmup_steps,
        num_training_steps=max(int(total_steps), 1),
    )
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
    }


def total_optimizer_steps(trainer) -> int:
    """Optimizer steps the fit will take (for the schedule), from max_steps or the data length.

    Why not ``trainer.estimated_stepping_batches``: it builds the train loader before a resumed
    checkpoint is restored, so the loader's saved position would never be applied.
    """
    if trainer.max_steps > 0:
        return int(trainer.max_steps)
    batches = len(trainer.datamodule.train_dataloader())  # per rank
    limit = trainer.limit_train_batches
    if limit is not None:
        batches = int(batches * limit) if isinstance(limit, float) else min(batches, int(limit))
    per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
    return per_epoch * max(int(trainer.max_epochs or 1), 1)
