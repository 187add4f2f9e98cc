"""Generalized Advantage Estimation over response tokens (Schulman et al. 2016).

Each generated token is one action; the episode of a row ends at its last masked token
(its EOS, or the ``max_new_tokens`` cut), after which values and rewards are zero.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns by the GAE recursion (Schulman et al. 2016, eqs. 11–16).

    ``δ_t = r_t + γ V(s_{t+1}) - V(s_t)`` and ``A_t = δ_t + γλ A_{t+1}``, computed backwards,
    with ``V`` and ``A`` beyond a row's last masked token taken as 0 (terminal state).
    Returns ``(advantages, returns)``, both ``[B, R]`` like the inputs, where
    ``returns = advantages + values`` are the critic's targets; both are 0 where `mask` is 0.

    `mask` must be contiguous from the start of each row (1…1 0…0), as a response mask is.
    """
    m = mask.to(values.dtype)
    rewards = rewards * m
    values = values * m
    length = rewards.size(1)
    next_value = torch.zeros_like(values[:, 0])  # [B]
    next_adv = torch.zeros_like(values[:, 0])  # [B]
    advantages = torch.zeros_like(values)
    # why a Python loop: the recursion is sequential in t; R is at most a few hundred tokens
    for t in reversed(range(length)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = delta + gamma * lam * next_adv
        advantages[:, t] = next_adv
        next_value = values[:, t]
    advantages = advantages * m
    return advantages, (advantages + values) * m
