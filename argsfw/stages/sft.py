"""The sft stage: supervised fine-tuning of the policy on prompt + response (argsfw.modules.sft)."""

from __future__ import annotations

from dataclasses import dataclass

from argsfw.config.checks import _choice
from argsfw.stages import Stage, register


@dataclass
class SFTConfig:
    """Supervised fine-tuning on prompt + response."""

    target: str = "chosen"  # chosen | both (train on both replies of each pair)
    loss_on_prompt: bool = False  # also train on prompt tokens

    def __post_init__(self) -> None:
        _choice("sft.target", self.target, ("chosen", "both"))


STAGE = register(
    Stage(
        name="sft",
        entry="fit",
        order=10,
        summary="supervised fine-tuning of the policy on prompt + chosen reply",
        config=SFTConfig,
        build="argsfw.modules.sft:build",
        makes="policy",
    )
)
