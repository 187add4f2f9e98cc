"""The rm stage: a scalar sequence reward model trained with the pairwise loss (argsfw.modules.reward)."""

from __future__ import annotations

from dataclasses import dataclass

from argsfw.config.checks import _at_least, _check, _number
from argsfw.stages import Stage, register


@dataclass
class RMConfig:
    """Pairwise reward-model training: -log sigmoid(r_chosen - r_rejected - margin)."""

    margin: float = 0.0
    prefix_cuts: int = 0  # also train on this many response-prefix cut points per pair
    val_prefix_cuts: int = (
        3  # validation also scores prefixes cut at j/(N+1) (val/prefix_reward_acc)
    )
    init_from_policy: bool = False  # start the RM body from the `policy=` (SFT) model

    def __post_init__(self) -> None:
        _check("rm.margin", self.margin, _number(self.margin), "a finite number")
        _at_least("rm.prefix_cuts", self.prefix_cuts, 0)
        _at_least("rm.val_prefix_cuts", self.val_prefix_cuts, 0)


def _model_inputs(job) -> list:
    from argsfw.errors import UsageError

    if job.rm.init_from_policy and not job.policy:
        raise UsageError(
            "rm.init_from_policy=true needs policy=<SFT run dir>; produce one with "
            "python -m argsfw.fit recipe=tiny_sft (or your *_sft recipe)"
        )
    # the body may come from a causal LM or a reward model: any head passes
    source = job.policy if job.rm.init_from_policy else job.model.base
    return [("policy" if source == job.policy else "model.base", source, None)]


STAGE = register(
    Stage(
        name="rm",
        entry="fit",
        order=20,
        summary="sequence reward model (AutoModelForSequenceClassification), pairwise loss",
        config=RMConfig,
        build="argsfw.modules.reward:build",
        makes="reward_model:sequence",
        caches_frozen=True,
        model_inputs=_model_inputs,
    )
)
