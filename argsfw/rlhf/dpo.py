"""Direct Preference Optimization (Rafailov et al., NeurIPS 2023): the preference loss on the
policy's log-likelihood ratio to a frozen reference, no reward model and no sampling.

With ``h_y = log π(y|x) − log π_ref(y|x)`` (summed over the response tokens), the implicit reward
is ``β·h_y`` and the loss of a pair is ``−log σ(β·(h_w − h_l))``; ``label_smoothing`` ε mixes in
the flipped pair (conservative DPO): ``−(1−ε)·log σ(z) − ε·log σ(−z)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, reward_chosen, reward_rejected)``: the mean DPO loss over the pairs and each
    side's implicit reward ``β·(log π − log π_ref)`` (detached), from response log-likelihoods
    ``[N]`` each (float32)."""
    h_w = policy_chosen.float() - ref_chosen.float()
    h_l = policy_rejected.float() - ref_rejected.float()
    z = beta * (h_w - h_l)
    loss = -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    return loss.mean(), (beta * h_w).detach(), (beta * h_l).detach()
