"""Pairwise (Bradley-Terry) reward-model loss and its validation statistics.

The reward model gives a scalar per sequence; for a preference pair the probability that the
chosen reply wins is ``σ(r_chosen − r_rejected)`` (Bradley & Terry 1952; InstructGPT eq. 1).
An optional margin asks the chosen reward to exceed the rejected one by at least ``margin``
(Llama-2 reward modelling, Touvron et al. 2023, eq. 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Mean of ``−log σ(r_chosen − r_rejected − margin)`` over the pairs.

    `chosen` and `rejected` are ``[N]`` rewards of the same N pairs; `margin` is a float or
    ``[N]``. Returns a scalar. ``logsigmoid`` keeps it finite for large reward gaps.
    """
    if chosen.shape != rejected.shape:
        raise ValueError(
            f"chosen {tuple(chosen.shape)} and rejected {tuple(rejected.shape)} differ"
        )
    return -F.logsigmoid(chosen.float() - rejected.float() - margin).mean()


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Fraction of pairs where the chosen reward is strictly higher (ties count as wrong)."""
    return (chosen > rejected).float().mean()


def reward_gap(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of ``r_chosen − r_rejected`` over the pairs."""
    return (chosen.float() - rejected.float()).mean()
