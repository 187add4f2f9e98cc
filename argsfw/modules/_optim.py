"""The optimizer and schedule of every fit stage (`OptimConfig`), PPO's actor-critic one included."""

from __future__ import annotations

import dataclasses
import math

import torch

SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def param_groups(model: torch.nn.Module, cfg) -> list[dict]:
    """AdamW groups of `model`'s trainable parameters at ``cfg.lr``: ``cfg.weight_decay`` on
    matrices, none on biases and norms; empty groups left out."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return [{**g, "lr": cfg.lr} for g in groups if g["params"]]


def adamw_with_groups(groups: list[dict], cfg, total_steps: int) -> dict:
    """``configure_optimizers`` result: one torch AdamW over `groups` and one per-step schedule.

    The schedule scales every group's own base learning rate by the same warm-up/decay factor.
    A plain torch AdamW rather than DeepSpeed's fused one: it needs no C++ op build, and
    DeepSpeed accepts it (ZeRO shards its states all the same). ``total_steps`` is the number
    of optimizer steps; `cfg` is an `OptimConfig`.
    """
    from transformers import get_scheduler

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


def adamw_with_schedule(model: torch.nn.Module, cfg, total_steps: int) -> dict:
    """AdamW over one model's trainable parameters (`param_groups`) with the per-step schedule."""
    return adamw_with_groups(param_groups(model, cfg), cfg, total_steps)


def actor_critic_adamw(
    actor: torch.nn.Module, critic: torch.nn.Module, cfg, critic_lr: float | None, total_steps: int
) -> dict:
    """One AdamW and one schedule for PPO's actor and critic.

    One optimizer because Lightning's DeepSpeed strategy takes exactly one. The actor's groups
    come first, at ``cfg.lr``; the critic's at `critic_lr` (or ``cfg.lr``).
    """
    critic_cfg = dataclasses.replace(cfg, lr=critic_lr or cfg.lr)
    return adamw_with_groups(
        param_groups(actor, cfg) + param_groups(critic, critic_cfg), cfg, total_steps
    )


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
