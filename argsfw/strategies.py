"""Distribution strategies for the fit stages, built from `StrategyConfig`.

``auto`` (one device, or DDP when several), ``ddp``, and DeepSpeed ZeRO 1–3 with optional
CPU offload. On a machine without CUDA, DeepSpeed runs through `CPUDeepSpeedStrategy`, a small
subclass of Lightning's strategy, so the ZeRO path is exercised for real in CI on CPU processes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, Strategy

from argsfw.devices import on_cpu, trainer_devices
from argsfw.errors import ConfigError

log = logging.getLogger(__name__)


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """Lightning's `DeepSpeedStrategy` minus its CUDA-only checks, for DeepSpeed on CPU (gloo).

    Why: Lightning refuses DeepSpeed without a CUDA accelerator, yet DeepSpeed itself runs ZeRO
    0–3 on CPU (``DS_ACCELERATOR=cpu``, gloo backend). We override three *private* Lightning
    methods; Lightning is pinned in ``constraints.txt`` and the ZeRO integration tests run this
    class, so an upgrade that changes them fails loudly rather than silently:

    - ``setup_environment``: the parent raises unless the accelerator is `CUDAAccelerator`; we
      skip to `DDPStrategy.setup_environment` (what the parent calls after its check).
    - ``setup_distributed``: the parent validates CUDA device indices (CPU devices have
      ``index=None``, which it rejects); we keep the rest of its body.
    - ``_setup_model_and_optimizer``: the parent passes ``device_rank=root_device.index`` (None
      on CPU) to `deepspeed.initialize`; we pass the local rank instead.

    It also stops DeepSpeed compiling its CPU shared-memory op (`_skip_shm_op_build`).
    """

    def setup_environment(self) -> None:
        """Set up DDP's environment without the CUDA-accelerator check."""
        DDPStrategy.setup_environment(self)

    def setup_distributed(self) -> None:
        """Initialise DeepSpeed's process group (gloo) without the CUDA device-index check."""
        from lightning.fabric.utilities.seed import reset_seed

        reset_seed()
        self.set_world_ranks()
        _skip_shm_op_build()
        self._init_deepspeed_distributed()

    def _setup_model_and_optimizer(self, model, optimizer, lr_scheduler=None):
        import argparse

        import deepspeed

        params = filter(lambda p: p.requires_grad, model.parameters())
        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank),
            config=self.config,
            model=model,
            model_parameters=params,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, ds_optimizer


def _skip_shm_op_build() -> None:
    """Keep DeepSpeed from JIT-compiling its CPU shared-memory communication op.

    Why: on CPU, DeepSpeed's `TorchBackend` compiles ``deepspeed_shm_comm`` (about a minute, and
    again on every fresh machine) when its process group starts, yet only
    ``inference_all_reduce`` (tensor-parallel inference) uses the op, and that falls back to
    ``torch.distributed.all_reduce`` without it. ZeRO training never calls it. DeepSpeed reads
    the op's compatibility from the module-level dict ``deepspeed.ops.__compatible_ops__``
    (probed once, then cached: edits persist), so marking the op incompatible skips the build.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def world_size(trainer_cfg) -> int:
    """Processes a Trainer built from `trainer_cfg` will run (devices × nodes)."""
    return trainer_devices(trainer_cfg)[1] * int(trainer_cfg.num_nodes)


def build_strategy(cfg, trainer_cfg) -> str | Strategy:
    """A Lightning strategy (or ``"auto"``) for `cfg` (`StrategyConfig`) on `trainer_cfg`'s devices.

    Raises `ConfigError` for DeepSpeed CPU offload without CUDA's pinned-memory ops.
    """
    cpu = on_cpu(trainer_cfg.accelerator)
    multi = world_size(trainer_cfg) > 1
    if cfg.name == "auto" and not multi:
        return "auto"
    if cfg.name in ("auto", "ddp"):
        return DDPStrategy(
            find_unused_parameters=cfg.find_unused_parameters,
            process_group_backend="gloo" if cpu else None,
        )
    return _deepspeed(cfg, cpu)


def _deepspeed(cfg, cpu: bool) -> DeepSpeedStrategy:
    kwargs = dict(
        stage=cfg.zero_stage,
        offload_optimizer=cfg.offload_optimizer,
        offload_parameters=cfg.offload_parameters,
        logging_level=logging.WARNING,
    )
    if cfg.offload_parameters and cfg.zero_stage != 3:
        raise ConfigError(
            f"strategy.offload_parameters needs ZeRO stage 3 (got strategy.zero_stage={cfg.zero_stage})"
        )
    if not cpu:
        return DeepSpeedStrategy(**kwargs)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    log.info("DeepSpeed ZeRO-%d on CPU (gloo) through CPUDeepSpeedStrategy", cfg.zero_stage)
    return CPUDeepSpeedStrategy(process_group_backend="gloo", **kwargs)


def is_deepspeed(strategy: Any) -> bool:
    """True when `strategy` is a DeepSpeed strategy (checkpoints are directories then)."""
    return isinstance(strategy, DeepSpeedStrategy)


def zero_stage(strategy: Any) -> int | None:
    """The ZeRO stage of a DeepSpeed strategy, or None for any other strategy."""
    if not is_deepspeed(strategy) or not isinstance(strategy.config, dict):
        return None
    return int(strategy.config.get("zero_optimization", {}).get("stage", 0))
