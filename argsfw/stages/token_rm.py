"""The token_rm stage: a token-level reward head over the vocabulary, FaRMA-style on pairs or distilled from a sequence RM (argsfw.modules.token_rm)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from argsfw.config.checks import _choice
from argsfw.errors import ConfigError
from argsfw.stages import Stage, register

TOKEN_RM_MODES = ("bt", "distill")


@dataclass
class TokenRMConfig:
    """Token-level RM head r(x, y_<t, v) = logits[v]: FaRMA-style pairs, or distilled from a sequence RM."""

    mode: str = "bt"  # bt (pairs: Bradley-Terry + consistency) | distill (regress a sequence RM)
    margin: float = 0.0  # bt: Bradley-Terry margin on the last-token values
    consistency_weight: float = 1.0  # bt: weight of the consistency loss (0: Bradley-Terry only)
    schedule: str = "sum"  # bt: sum (both losses every step) | alternate (by optimizer step)
    consistency_stop_grad: bool = True  # bt: detach max_v r(x, y_≤t, v), the consistency target
    teacher_rm: str | None = None  # distill: the sequence RM (HF dir, run dir or hub id)
    distill_topk: int = 10  # distill: candidates per prefix, the policy's top-k
    distill_prefixes: int = 4  # distill: prefixes sampled per training response
    distill_center: bool = True  # distill: centre head values and targets per prefix

    def __post_init__(self) -> None:
        _choice("token_rm.mode", self.mode, TOKEN_RM_MODES)
        _choice("token_rm.schedule", self.schedule, ("sum", "alternate"))
        w = self.consistency_weight
        if not (math.isfinite(w) and w >= 0):
            raise ConfigError(f"token_rm.consistency_weight={w} must be a finite number >= 0")
        if not math.isfinite(self.margin):
            raise ConfigError(f"token_rm.margin={self.margin} must be finite")
        if self.mode == "distill" and not self.teacher_rm:
            raise ConfigError(
                "token_rm.mode=distill needs token_rm.teacher_rm=<sequence RM run dir or HF dir>, "
                "e.g. runs/tiny_rm"
            )
        if self.mode == "bt" and self.teacher_rm:
            raise ConfigError(
                "token_rm.teacher_rm is used only with token_rm.mode=distill; drop it or set the mode"
            )
        if self.schedule == "alternate" and self.consistency_weight == 0:
            raise ConfigError(
                "token_rm.schedule=alternate with token_rm.consistency_weight=0 would skip every "
                "other step; use schedule=sum"
            )
        if self.distill_topk < 2:
            raise ConfigError(f"token_rm.distill_topk={self.distill_topk} must be >= 2")
        if self.distill_prefixes < 1:
            raise ConfigError(f"token_rm.distill_prefixes={self.distill_prefixes} must be >= 1")


STAGE = register(
    Stage(
        name="token_rm",
        entry="fit",
        order=60,
        summary="token-level RM head r(x, y_<t, v) = logits[v]: FaRMA-style pairs or distilled",
        config=TokenRMConfig,
        build="argsfw.modules.token_rm:build",
        makes="reward_model:token",
    )
)
