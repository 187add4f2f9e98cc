"""The arm stage: GenARM's autoregressive reward model, a causal LM trained on pairs (argsfw.modules.arm)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from argsfw.errors import ConfigError
from argsfw.stages import Stage, register


@dataclass
class ArmConfig:
    """GenARM's autoregressive RM: r(x, y) = Σ log π_r(y_t | x, y_<t), loss −log σ(β·Δr − margin)."""

    beta: float = 0.05  # scale of the reward gap in the loss (GenARM's HH-RLHF value)
    length_normalize: bool = False  # divide each reply's log-likelihood by its token count
    margin: float = 0.0  # ask β·(r_chosen − r_rejected) to exceed this

    def __post_init__(self) -> None:
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"arm.beta={self.beta} must be a finite number > 0 (GenARM: 0.05)")
        if not math.isfinite(self.margin):
            raise ConfigError(f"arm.margin={self.margin} must be finite")


STAGE = register(
    Stage(
        name="arm",
        entry="fit",
        order=50,
        summary="GenARM autoregressive RM: r(x, y) = sum log pi_r(y_t | x, y_<t), pairwise loss",
        config=ArmConfig,
        build="argsfw.modules.arm:build",
        makes="reward_model:arm",
        caches_frozen=True,
    )
)
