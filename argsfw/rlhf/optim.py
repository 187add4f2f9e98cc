"""The PPO optimizer: one AdamW over actor and critic parameter groups, with one schedule."""

from __future__ import annotations

import dataclasses

import torch

SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def param_groups(model: torch.nn.Module, cfg) -> list[dict]:
    """AdamW groups of `model`'s trainable parameters at ``cfg.lr``.

    As `argsfw.modules._optim.adamw_with_schedule`: ``cfg.weight_decay`` on matrices, none on
    biases and norms; empty groups are left out.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return [{**g, "lr": cfg.lr} for g in groups if g["params"]]


def actor_critic_adamw(
    actor: torch.nn.Module, critic: torch.nn.Module, cfg, critic_lr: float | None, total_steps: int
) -> dict:
    """``configure_optimizers`` result: one AdamW and one per-step schedule for both models.

    One optimizer because Lightning's DeepSpeed strategy takes exactly one. The actor's groups
    come first, at ``cfg.lr``; the critic's at `critic_lr` (or ``cfg.lr``); each model has a
    decayed (matrices) and an undecayed (biases, norms) group. The schedule — that of
    `argsfw.modules._optim.adamw_with_schedule` — scales every group's own base learning rate
    by the same warm-up/decay factor. `cfg` is an `OptimConfig`.
    """
    from transformers import get_scheduler

    critic_cfg = dataclasses.replace(cfg, lr=critic_lr or cfg.lr)
    groups = param_groups(actor, cfg) + param_groups(critic, critic_cfg)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    scheduler = get_scheduler(
        SCHEDULES[cfg.scheduler],
        optimizer,
        num_warmup_steps=cfg.warmup_steps,
        num_training_steps=max(int(total_steps), 1),
    )
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
    }
