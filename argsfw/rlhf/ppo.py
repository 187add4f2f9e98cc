"""The PPO losses for language models: clipped policy objective and clipped value loss.

Schulman et al., "Proximal Policy Optimization Algorithms" (2017). Each generated token is an
action; losses are averaged over the response tokens selected by a ``[B, R]`` mask, so padding
after EOS never contributes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from argsfw.rlhf.stats import masked_mean


class PolicyLoss(NamedTuple):
    """Output of `ppo_policy_loss` (all scalars)."""

    loss: torch.Tensor  # the clipped surrogate loss to minimise
    clip_frac: torch.Tensor  # fraction of tokens where the clipped term was taken
    approx_kl: torch.Tensor  # mean of ½(log π - log π_old)² (Schulman's k2 of old vs new)


class ValueLoss(NamedTuple):
    """Output of `ppo_value_loss` (all scalars)."""

    loss: torch.Tensor  # ½ · masked mean of max(unclipped, clipped) squared errors
    clip_frac: torch.Tensor  # fraction of tokens where the clipped error was larger


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
) -> PolicyLoss:
    """The clipped surrogate objective, PPO paper eq. 7, negated to a loss.

    ``L = -E_t[min(ρ_t A_t, clip(ρ_t, 1-ε, 1+ε) A_t)]`` with ``ρ_t = π(a_t|s_t) / π_old(a_t|s_t)``,
    the expectation being the masked mean over response tokens. Inputs are ``[B, R]``;
    `advantages` and `old_logprobs` are constants (no gradient flows into them).
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
    approx_kl = 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)
    return PolicyLoss(loss, clip_frac.detach(), approx_kl.detach())


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float = 0.2,
) -> ValueLoss:
    """The clipped value loss of PPO as in OpenAI baselines' ``ppo2`` (and TRL, DeepSpeed-Chat).

    ``V_clip = V_old + clip(V - V_old, -ε_v, ε_v)`` and
    ``L_V = ½ · E_t[max((V - R_t)², (V_clip - R_t)²)]`` over masked response tokens, with
    ``R_t`` the GAE returns. Inputs are ``[B, R]``; returns a `ValueLoss` of scalars.
    """
    clipped_values = old_values + torch.clamp(
        values - old_values, -clip_range_value, clip_range_value
    )
    err = (values - returns) ** 2
    err_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    clip_frac = masked_mean((err_clipped > err).to(values.dtype), mask)
    return ValueLoss(loss, clip_frac.detach())
