"""One LightningModule per fit stage, and the interface `argsfw.fit` drives them through.

Each stage module (`argsfw.modules.sft`, `.reward`, `.ppo`, `.arm`, `.token_rm`) exposes
``build(job: JobConfig, run: RunDir) -> StageParts``. `argsfw.fit` does everything the stages
share (run directory, seeding, logger, strategy, Trainer, checkpoints, resume, export, metrics)
and asks the stage only for the parts below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keep `import argsfw.modules` light: Lightning loads only when a stage builds
    import lightning

    from argsfw.config.run_dir import RunDir
    from argsfw.config.schema import JobConfig

# stage name (JobConfig.stage) -> module exposing build(job, run) -> StageParts
STAGE_MODULES = {
    "sft": "argsfw.modules.sft",
    "rm": "argsfw.modules.reward",
    "ppo": "argsfw.modules.ppo_stage",
    "arm": "argsfw.modules.arm",
    "token_rm": "argsfw.modules.token_rm",
}


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
    """Import the module of `job.stage` and call its ``build(job, run)``.

    Raises `argsfw.errors.ConfigError` when the stage has no fit module.
    """
    from argsfw.errors import ConfigError

    name = STAGE_MODULES.get(job.stage)
    if name is None:
        raise ConfigError(
            f"stage {job.stage!r} cannot be fitted; fit stages: {', '.join(STAGE_MODULES)}"
        )
    return importlib.import_module(name).build(job, run)
