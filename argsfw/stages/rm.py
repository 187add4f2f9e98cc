"""The rm stage: a scalar sequence reward model trained with the pairwise loss (argsfw.modules.reward)."""

from __future__ import annotations

from dataclasses import dataclass

from argsfw.config.checks import _at_least, _check, _number
from argsfw.errors import ConfigError
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
    # with model.train_top_layers: compute the frozen layers' outputs once per sequence and
    # reuse them every epoch (rotary-position decoders; checked against the model's forward)
    cache_frozen: bool = False
    # where those outputs live: null = the argsfw cache ($ARGSFW_FEATURES, else
    # ~/.cache/argsfw/features), shared by every fit of the same frozen bottom; a folder; or
    # "memory" (this run only)
    feature_dir: str | None = None

    def __post_init__(self) -> None:
        _check("rm.margin", self.margin, _number(self.margin), "a finite number")
        _at_least("rm.prefix_cuts", self.prefix_cuts, 0)
        _at_least("rm.val_prefix_cuts", self.val_prefix_cuts, 0)


def _check_job(job) -> None:
    if job.rm.cache_frozen and not job.model.train_top_layers:
        raise ConfigError(
            "rm.cache_frozen=true caches the frozen layers' outputs but nothing is frozen: "
            "set model.train_top_layers=N (e.g. 4)"
        )


STAGE = register(
    Stage(
        name="rm",
        entry="fit",
        summary="sequence reward model (AutoModelForSequenceClassification), pairwise loss",
        config=RMConfig,
        build="argsfw.modules.reward:build",
        makes="reward_model:sequence",
        check=_check_job,
    )
)
