"""The value stage: a prefix value model V(x, y_<=t) for controlled decoding, trained CD-FUDGE
style (argsfw.modules.value)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from argsfw.errors import ConfigError
from argsfw.stages import Stage, register


@dataclass
class ValueConfig:
    """CD-FUDGE: sample answers from the policy, label each with the sequence RM's reward, and
    regress V on every prefix of the answer towards that reward (squared error)."""

    samples_per_prompt: int = 4  # answers sampled per prompt and step
    max_new_tokens: int = 32  # length of the sampled answers
    temperature: float = 1.0  # sampling temperature of the policy (1: its own distribution)

    def __post_init__(self) -> None:
        for key in ("samples_per_prompt", "max_new_tokens"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"value.{key}={v!r} must be an integer >= 1")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"value.temperature={self.temperature} must be a finite number > 0")


def _check_job(job) -> None:
    missing = [k for k in ("policy", "reward_model") if not getattr(job, k)]
    if missing:
        raise ConfigError(
            f"stage value needs {' and '.join(f'{k}=' for k in missing)}: pass the policy it "
            "samples from and the sequence RM that labels its answers (e.g. "
            "policy=runs/tiny_sft reward_model=runs/tiny_rm)"
        )


STAGE = register(
    Stage(
        name="value",
        entry="fit",
        order=70,
        summary="prefix value model V(x, y_<=t) for controlled decoding (CD-FUDGE), from the RM",
        config=ValueConfig,
        build="argsfw.modules.value:build",
        reads_reward_model=True,
        makes="reward_model:value",
        check=_check_job,
    )
)
