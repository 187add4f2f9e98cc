"""One LightningModule per fit stage, and the interface `argsfw.fit` drives them through.

Each fit stage (`argsfw.stages`) names a ``build(job: JobConfig, run: RunDir) -> StageParts``
(`argsfw.modules.sft`, `.reward`, `.ppo_stage`, `.arm`, `.token_rm`). `argsfw.fit` does everything the stages
share (run directory, seeding, logger, strategy, Trainer, checkpoints, resume, export, metrics)
and asks the stage only for the parts below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keep `import argsfw.modules` light: Lightning loads only when a stage builds
    import lightning

    from argsfw.config.run_dir import RunDir
    from argsfw.config.schema import JobConfig


@dataclass
class StageParts:
    """What one fit stage hands to the shared orchestration in `argsfw.fit`.

    ``export(module, out_dir)`` writes a plain Hugging Face directory (safetensors weights,
    config, tokenizer) for the *trained* module into ``out_dir``; fit calls it on rank 0 with a
    temporary directory and renames it to ``run.hf_dir`` only when it succeeded. With ZeRO-3 fit
    first loads the gathered full state dict into the module, so ``export`` never sees shards.

    ``meta`` is merged into ``meta.json`` (base model, tokenizer, max length, data stats …).
    """

    module: lightning.LightningModule
    datamodule: lightning.LightningDataModule
    export: Callable[[Any, Path], None]
    meta: dict = field(default_factory=dict)


def build_stage(job: JobConfig, run: RunDir) -> StageParts:
    """Build `job.stage`'s parts with the ``build`` its `argsfw.stages.Stage` names.

    Raises `argsfw.errors.ConfigError` when the stage is not a fit stage.
    """
    from argsfw.errors import ConfigError
    from argsfw.stages import find_stage, names

    stage = find_stage(job.stage)
    if stage is None or stage.entry != "fit":
        raise ConfigError(
            f"stage {job.stage!r} cannot be fitted; fit stages: {', '.join(names('fit'))}"
        )
    return stage.build_fn()(job, run)
