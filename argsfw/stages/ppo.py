"""The ppo stage: RLHF with PPO against a sequence reward model, from the SFT policy (argsfw.modules.ppo)."""

from __future__ import annotations

from dataclasses import dataclass

from argsfw.config.checks import _at_least, _choice, _fraction, _non_negative, _positive
from argsfw.errors import UsageError
from argsfw.stages import Stage, register


@dataclass
class PPOConfig:
    """PPO with a critic, frozen reference and frozen reward model."""

    rollout_batch_size: int = 16  # prompts per rollout (per device)
    ppo_epochs: int = 2  # optimisation passes over each rollout batch
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int = 0
    kl_coef: float = 0.1
    kl_estimator: str = "k1"  # k1 | k3
    adaptive_kl: bool = False
    target_kl: float = 6.0
    kl_horizon: int = 10000
    gamma: float = 1.0
    lam: float = 0.95
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    vf_coef: float = 0.5
    critic_lr: float | None = None  # defaults to optim.lr
    whiten_advantages: bool = True

    def __post_init__(self) -> None:
        _choice("ppo.kl_estimator", self.kl_estimator, ("k1", "k3"))
        for key in ("rollout_batch_size", "ppo_epochs", "max_new_tokens", "kl_horizon"):
            _at_least(f"ppo.{key}", getattr(self, key), 1)
        _at_least("ppo.top_k", self.top_k, 0)
        for key in ("temperature", "target_kl", "clip_range", "clip_range_value"):
            _positive(f"ppo.{key}", getattr(self, key))
        _non_negative("ppo.kl_coef", self.kl_coef)
        _non_negative("ppo.vf_coef", self.vf_coef)
        _fraction("ppo.gamma", self.gamma)
        _fraction("ppo.lam", self.lam)
        if self.critic_lr is not None:
            _positive("ppo.critic_lr", self.critic_lr)


def require_inputs(job) -> None:
    """Raise `UsageError` naming the command that produces a missing PPO input, or a setting PPO
    does not support."""
    if not job.policy:
        raise UsageError(
            "PPO needs policy=<SFT run dir or HF dir>; produce one with "
            "python -m argsfw.fit recipe=tiny_sft (or your *_sft recipe)"
        )
    if not job.reward_model:
        raise UsageError(
            "PPO needs reward_model=<RM run dir or HF dir>; produce one with "
            "python -m argsfw.fit recipe=tiny_rm (or your *_rm recipe)"
        )
    if job.strategy.name == "deepspeed" and job.strategy.zero_stage == 3:
        # why refused: sampling works under ZeRO-3 (synced_gpus), and one micro-batch per step
        # matched DDP, but gradients accumulated over several micro-batches per step did not
        raise UsageError(
            "the PPO stage does not support DeepSpeed ZeRO-3: its gradients accumulated over "
            "several micro-batches per optimizer step differ from DDP's; use "
            "strategy=deepspeed_zero2 or strategy=ddp"
        )
    if job.model.lora.enabled:
        raise UsageError("model.lora.enabled=true is not supported by the PPO stage yet")


def _model_inputs(job) -> list:
    from argsfw.models import CAUSAL_LM, SEQ_CLS

    require_inputs(job)
    return [("policy", job.policy, CAUSAL_LM), ("reward model", job.reward_model, SEQ_CLS)]


STAGE = register(
    Stage(
        name="ppo",
        entry="fit",
        order=30,
        summary="PPO on prompts against a sequence RM, KL to the frozen SFT reference",
        config=PPOConfig,
        build="argsfw.modules.ppo_stage:build",
        reads_reward_model=True,
        model_inputs=_model_inputs,
        makes="policy",
        color="#2ca02c",
        marker="*",
    )
)
