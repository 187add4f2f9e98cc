"""The dpo stage: Direct Preference Optimization of the policy against a frozen copy of itself
(argsfw.modules.dpo), the training-time baseline decoding-time methods are compared with."""

from __future__ import annotations

import math
from dataclasses import dataclass

from argsfw.errors import ConfigError
from argsfw.stages import Stage, register


@dataclass
class DPOConfig:
    """DPO: loss −log σ(β·((log π − log π_ref)(y_w) − (log π − log π_ref)(y_l)))."""

    beta: float = 0.1  # strength of the KL tie to the reference (the DPO paper's 0.1)
    label_smoothing: float = 0.0  # conservative DPO's ε in [0, 0.5): assumed label-noise rate

    def __post_init__(self) -> None:
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"dpo.beta={self.beta} must be a finite number > 0 (e.g. 0.1)")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"dpo.label_smoothing={self.label_smoothing} must be in [0, 0.5)")


STAGE = register(
    Stage(
        name="dpo",
        entry="fit",
        order=40,
        summary="DPO of the policy on preference pairs against its frozen initial self",
        config=DPOConfig,
        build="argsfw.modules.dpo:build",
        makes="policy",
        caches_frozen=True,
        color="#006400",
        marker="8",
    )
)
