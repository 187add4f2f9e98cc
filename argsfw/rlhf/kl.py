"""KL penalty against the reference policy: per-token estimators and the adaptive coefficient.

The RLHF objective (Ziegler et al. 2019, eq. 2; Ouyang et al. 2022, eq. 2) is
``E[r(x, y)] - β · KL(π(·|x) || π_ref(·|x))``; the KL of a sampled response is estimated
token by token from the two models' log-probabilities of the sampled tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

ESTIMATORS = ("k1", "k3")


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The naive estimator ``k1 = log π(a|s) - log π_ref(a|s)`` per token (Schulman 2020).

    Unbiased for KL(π || π_ref) under samples from π, but any single value may be negative.
    Shapes match the inputs (e.g. ``[B, R]``).
    """
    return logprobs - ref_logprobs


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The low-variance estimator ``k3 = (ρ - 1) - log ρ`` with ``ρ = π_ref(a|s) / π(a|s)``.

    Schulman, "Approximating KL Divergence" (2020): unbiased for KL(π || π_ref) under samples
    from π, and non-negative for every sample (``x - 1 ≥ log x``). Shapes match the inputs.
    """
    log_ratio = ref_logprobs - logprobs  # log ρ
    return torch.expm1(log_ratio) - log_ratio


def kl_estimate(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1"
) -> torch.Tensor:
    """Per-token KL estimate by name (``"k1"`` or ``"k3"``). Raises `ValueError` otherwise."""
    if estimator == "k1":
        return kl_k1(logprobs, ref_logprobs)
    if estimator == "k3":
        return kl_k3(logprobs, ref_logprobs)
    raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")


def token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Per-token rewards of the KL-regularised objective (Ziegler et al. 2019, eq. 2).

    ``r_t = -β · KL_t`` on every response token, plus the sequence score ``r(x, y)`` on the
    last masked token of each row. `scores` is ``[B]``; `kl` and `mask` are ``[B, R]``.
    Returns ``[B, R]``, 0 where `mask` is 0. Rows with an empty mask get no score.
    """
    m = mask.to(kl.dtype)
    rewards = -kl_coef * kl * m
    last = (m.sum(1).long() - 1).clamp(min=0)  # [B] index of each row's last response token
    has_tokens = (m.sum(1) > 0).to(kl.dtype)
    rewards[torch.arange(rewards.size(0), device=rewards.device), last] += scores * has_tokens
    return rewards


def adaptive_kl_update(
    coef: float, current_kl: float, target_kl: float, horizon: int, n_steps: int
) -> float:
    """One step of the adaptive KL controller of Ziegler et al. (2019), section 2.2.

    ``e = clip(KL / KL_target - 1, -0.2, 0.2)`` and ``β ← β · (1 + K_β · e)`` with
    ``K_β = n_steps / horizon`` (``n_steps``: samples seen since the last update). The
    coefficient grows when the policy drifts past the target and shrinks when it stays below.
    Raises `ValueError` for a non-positive target or horizon.
    """
    if target_kl <= 0 or horizon <= 0:
        raise ValueError(f"target_kl and horizon must be positive, got {target_kl} and {horizon}")
    error = min(max(current_kl / target_kl - 1.0, -0.2), 0.2)
    return coef * (1.0 + error * n_steps / horizon)


@dataclass
class KLController:
    """The KL coefficient β, fixed or adaptive, with the state a checkpoint must carry.

    ``adaptive=False`` keeps β at its initial value; otherwise `update` applies
    `adaptive_kl_update`. `state_dict` / `load_state_dict` round-trip everything that changes.
    """

    coef: float
    adaptive: bool = False
    target_kl: float = 6.0
    horizon: int = 10000

    def update(self, current_kl: float, n_steps: int) -> float:
        """Feed the KL measured on `n_steps` samples; return the (possibly new) coefficient."""
        if self.adaptive:
            self.coef = adaptive_kl_update(
                self.coef, current_kl, self.target_kl, self.horizon, n_steps
            )
        return self.coef

    def state_dict(self) -> dict:
        """A plain dict of the controller's fields (goes into the Lightning checkpoint)."""
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore the fields saved by `state_dict`."""
        self.coef = float(state["coef"])
        self.adaptive = bool(state.get("adaptive", self.adaptive))
        self.target_kl = float(state.get("target_kl", self.target_kl))
        self.horizon = int(state.get("horizon", self.horizon))
