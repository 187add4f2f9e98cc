"""The optimizer and schedule every automatically optimised stage uses (`OptimConfig`)."""

from __future__ import annotations

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
