"""The configuration schema: one structured-config dataclass per config group.

Every key has a type, a default and a one-line doc. Hydra composes YAML from ``configs/`` and ``recipes/``
against `JobConfig`; a key that is not here fails at start-up with its name. Values are then
checked by each dataclass's ``__post_init__`` (run by ``OmegaConf.to_object``), so library
code receives typed dataclasses, never an untyped DictConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from typing import Any

from argsfw.config.checks import (
    _at_least,
    _batches,
    _check,
    _choice,
    _non_negative,
    _number,
    _positive,
    check_finite,
)
from argsfw.data.config import DataConfig
from argsfw.data.loading import check_data_config
from argsfw.decoding.config import DecodeConfig, from_config
from argsfw.devices import parse_devices
from argsfw.errors import ConfigError

# Lightning's precision names (and the legacy short forms it still accepts).
PRECISIONS = (
    "64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed",
    "transformer-engine", "transformer-engine-float16", "64", "32", "16", "bf16",
)  # fmt: skip
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")


def _check_devices(value: Any) -> None:
    """``trainer.devices``: an int >= 1, -1 or "auto" (all), a list of distinct ids, or "0,1"."""
    parse_devices(value)  # the one parser fit and predict use too (ConfigError naming the key)


@dataclass
class TinyModelConfig:
    """Shape of the tiny model built in-process when no base model is named."""

    arch: str = "llama"  # llama | opt
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    vocab_size: int = 2048  # BPE vocabulary trained on the tiny corpus
    max_position_embeddings: int = 512

    def __post_init__(self) -> None:
        _choice("model.tiny.arch", self.arch, ("llama", "opt"))
        for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
            _at_least(f"model.tiny.{key}", getattr(self, key), 1)
        _at_least("model.tiny.vocab_size", self.vocab_size, 64)
        _at_least("model.tiny.max_position_embeddings", self.max_position_embeddings, 2)
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.tiny.hidden_size={self.hidden_size} is not a multiple of "
                f"model.tiny.num_heads={self.num_heads}; change one of them"
            )


@dataclass
class LoraConfig:
    """LoRA adapters through peft; merged into the weights on export."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self) -> None:
        _at_least("model.lora.r", self.r, 1)
        _positive("model.lora.alpha", self.alpha)
        _check(
            "model.lora.dropout",
            self.dropout,
            _number(self.dropout) and 0 <= self.dropout < 1,
            "in [0, 1)",
        )


@dataclass
class ModelConfig:
    """The base model a fit stage starts from (when no `policy=` input is given)."""

    name: str = "tiny"  # a label for logs and run metadata
    base: str | None = None  # HF dir or hub id; None builds the tiny model from `tiny`
    tokenizer: str | None = None  # defaults to the base model's tokenizer
    dtype: str = "float32"  # weights dtype when loading (float32 | bfloat16 | float16)
    gradient_checkpointing: bool = False
    # train only the top N transformer layers + final norm + head; the rest is frozen (a cheap
    # alternative to LoRA when the frozen part dominates the cost; see modules/_top_layers.py)
    train_top_layers: int | None = None
    # with train_top_layers: the frozen bottom's outputs are computed once per sequence and kept
    # on disk (argsfw.models.features), shared by every later fit of the same bottom and data
    # (the rm, dpo and arm stages; the feature pass runs before the first step and resumes)
    cache_frozen: bool = False
    # where they live: null = $ARGSFW_FEATURES, else ~/.cache/argsfw/features; a folder; or
    # "memory" (this run only)
    feature_dir: str | None = None
    # the dtype the bottom runs in for the cache: float32 (exact), or bfloat16 (autocast: ~3x
    # faster on CPUs with AMX and on GPUs, half the disk; the top still trains in model.dtype)
    feature_dtype: str = "float32"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        _choice(
            "model.dtype",
            self.dtype,
            ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "auto"),
        )
        if self.train_top_layers is not None:
            _at_least("model.train_top_layers", self.train_top_layers, 1)
        _choice("model.feature_dtype", self.feature_dtype, ("float32", "bfloat16"))
        if self.cache_frozen and not self.train_top_layers:
            raise ConfigError(
                "model.cache_frozen=true caches the frozen layers' outputs but nothing is frozen: "
                "set model.train_top_layers=N (e.g. 4)"
            )


@dataclass
class TrainerConfig:
    """Arguments handed to `lightning.Trainer` (a typed subset; see Lightning's docs)."""

    accelerator: str = "auto"
    devices: Any = 1  # int, list of ids, or "auto"
    num_nodes: int = 1
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed | bf16-true
    max_epochs: int = 1
    max_steps: int = -1
    gradient_clip_val: float | None = 1.0
    val_check_interval: Any = None  # float fraction of an epoch or int steps
    check_val_every_n_epoch: int | None = 1
    log_every_n_steps: int = 10
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_predict_batches: Any = None
    num_sanity_val_steps: int = 0
    enable_progress_bar: bool = True
    deterministic: bool = False
    checkpoint_every_n_steps: int = 0  # >0: also a checkpoint every N optimizer steps
    # also a checkpoint every this many minutes of training (0: off), so a killed fit loses at
    # most that much; on by default because epoch ends are rare in real runs
    checkpoint_every_minutes: float = 30.0

    def __post_init__(self) -> None:
        # Whether the named accelerator exists is checked at start-up (`argsfw.cli`), not here:
        # every recipe, GPU ones included, must compose on a machine without a GPU.
        _choice("trainer.accelerator", self.accelerator, ACCELERATORS)
        _check_devices(self.devices)
        _choice("trainer.precision", self.precision, PRECISIONS)
        _at_least("trainer.num_nodes", self.num_nodes, 1)
        _check(
            "trainer.max_epochs",
            self.max_epochs,
            self.max_epochs == -1 or self.max_epochs >= 1,
            "an integer >= 1, or -1 (no limit)",
        )
        _check(
            "trainer.max_steps",
            self.max_steps,
            self.max_steps == -1 or self.max_steps >= 1,
            "an integer >= 1, or -1 (no limit: max_epochs decides)",
        )
        if self.gradient_clip_val is not None:
            _non_negative("trainer.gradient_clip_val", self.gradient_clip_val)
        _at_least("trainer.log_every_n_steps", self.log_every_n_steps, 1)
        _at_least("trainer.checkpoint_every_n_steps", self.checkpoint_every_n_steps, 0)
        _non_negative("trainer.checkpoint_every_minutes", self.checkpoint_every_minutes)
        _at_least("trainer.num_sanity_val_steps", self.num_sanity_val_steps, -1)
        if self.check_val_every_n_epoch is not None:
            _at_least("trainer.check_val_every_n_epoch", self.check_val_every_n_epoch, 1)
        for key in ("val_check_interval", "limit_train_batches", "limit_predict_batches"):
            _batches(f"trainer.{key}", getattr(self, key))
        if self.limit_val_batches != 0:  # 0 turns validation off
            _batches("trainer.limit_val_batches", self.limit_val_batches)


@dataclass
class StrategyConfig:
    """Distribution strategy: Lightning's auto/DDP, or DeepSpeed ZeRO."""

    name: str = "auto"  # auto | ddp | deepspeed
    zero_stage: int = 2  # DeepSpeed ZeRO stage (1, 2, 3)
    offload_optimizer: bool = False  # ZeRO-Offload of optimizer states to CPU
    offload_parameters: bool = False  # ZeRO-3 parameter offload to CPU
    find_unused_parameters: bool = False  # DDP

    def __post_init__(self) -> None:
        _choice("strategy.name", self.name, ("auto", "ddp", "deepspeed"))
        _choice("strategy.zero_stage", self.zero_stage, (0, 1, 2, 3))


@dataclass
class LoggerConfig:
    """Experiment logger. W&B runs offline unless an API key is available."""

    name: str = "wandb"  # wandb | csv | tensorboard | none
    project: str = "argsfw"
    entity: str | None = None
    mode: str = "auto"  # auto (online with a key, else offline) | online | offline | disabled
    tags: list[str] = field(default_factory=list)
    log_samples: int = 8  # sample generations logged as a table (0: none)
    run_name: str | None = None  # W&B run name (default: the run dir's name, with the stage)
    group: str | None = None  # W&B group (a pipeline sets its run dir's name)

    def __post_init__(self) -> None:
        _choice("logger.name", self.name, ("wandb", "csv", "tensorboard", "none"))
        _choice("logger.mode", self.mode, ("auto", "online", "offline", "disabled"))
        _at_least("logger.log_samples", self.log_samples, 0)


@dataclass
class OptimConfig:
    """Optimizer and schedule, shared by the fit stages."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    scheduler: str = "cosine"  # cosine | linear | constant
    warmup_steps: int = 0
    batch_size: int = 32  # global batch; accumulation = batch_size / (micro_batch_size * world)
    micro_batch_size: int = 8  # per device and step

    def __post_init__(self) -> None:
        _choice("optim.scheduler", self.scheduler, ("cosine", "linear", "constant"))
        _positive("optim.lr", self.lr)
        _non_negative("optim.weight_decay", self.weight_decay)
        _check(
            "optim.betas", self.betas,
            len(self.betas) == 2 and all(_number(b) and 0 <= b < 1 for b in self.betas),
            "two numbers in [0, 1), e.g. [0.9, 0.95]",
        )  # fmt: skip
        _at_least("optim.warmup_steps", self.warmup_steps, 0)
        _at_least("optim.batch_size", self.batch_size, 1)
        _at_least("optim.micro_batch_size", self.micro_batch_size, 1)
        if self.micro_batch_size > self.batch_size:
            raise ConfigError(
                f"optim.micro_batch_size={self.micro_batch_size} is larger than the global "
                f"optim.batch_size={self.batch_size}; lower micro_batch_size or raise batch_size"
            )
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"optim.batch_size={self.batch_size} is not a multiple of optim.micro_batch_size="
                f"{self.micro_batch_size}; make the global batch a multiple of the micro batch"
            )

    def accumulation(self, world_size: int) -> int:
        """Gradient-accumulation steps that make `batch_size` the global batch (derived, not set)."""
        per_step = self.micro_batch_size * world_size
        if self.batch_size % per_step:
            raise ConfigError(
                f"optim.batch_size={self.batch_size} is not divisible by micro_batch_size × devices = {per_step}"
            )
        return self.batch_size // per_step


@dataclass
class JobConfig:
    """One run of one entry point. Stage inputs take an HF dir, an argsfw run dir or a hub id.

    The shared sections are here; each stage's own section (``rm``, ``decode`` ...) comes from
    the stage registry (`argsfw.stages`), added by `job_schema`: a job is an instance of that
    subclass, whose name is JobConfig too.
    """

    recipe: str = ""  # the recipe's name (set by composition)
    stage: str = ""  # a stage name (python -m argsfw.methods lists them) or pkg.module:STAGE
    run_dir: str | None = None  # default: runs/<recipe>
    resume: bool = False  # continue the run in run_dir from its last checkpoint
    overwrite: bool = False  # start over in an existing run_dir
    ckpt_path: str | None = None  # fit: a checkpoint to resume from ("last" = run_dir's newest)
    seed: int = 0
    num_threads: int | None = None  # torch CPU threads per process (None: torch's default)
    print_config: bool = False  # print the resolved config and exit
    policy: str | None = None  # the model to train further or decode with
    reward_model: str | None = None  # RM for PPO, predict and evaluate
    outputs: list[str] = field(
        default_factory=list
    )  # evaluate: predict outputs (paths or name=path)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # the decode group (predict): the shared keys (DecodeConfig) and the method's own knobs, as
    # one flat section (decode.weight=2); composed as a dict, then typed by the method's settings
    decode: Any = field(default_factory=dict)

    def __post_init__(self) -> None:
        from argsfw.stages import get_stage

        check_finite(self)  # first: the range checks below would let an infinite value through
        stage = get_stage(self.stage) if self.stage else None
        _at_least("seed", self.seed, 0)
        if self.num_threads is not None:
            _at_least("num_threads", self.num_threads, 1)
        if self.resume and self.overwrite:
            raise ConfigError("resume=true and overwrite=true contradict each other; pass one")
        try:  # why re-raised: the library checks raise their packages' own ValueErrors
            check_data_config(self.data)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not isinstance(self.decode, DecodeConfig):
            try:
                self.decode = from_config(dict(self.decode), prefix="decode.")
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.model.train_top_layers and self.model.lora.enabled:
            raise ConfigError(
                "model.train_top_layers and model.lora.enabled are two ways to train part of the "
                "model; pass one"
            )
        if self.model.cache_frozen and stage is not None and not stage.caches_frozen:
            from argsfw.stages import stages

            readers = [s.name for s in stages().values() if s.caches_frozen]
            raise ConfigError(
                f"model.cache_frozen=true: stage {stage.name} does not read cached features "
                f"(the {', '.join(readers)} stages do); set model.cache_frozen=false"
            )
        if stage is not None and stage.check is not None and hasattr(self, stage.section or ""):
            stage.check(self)

    def sections(self) -> list[str]:
        """The config sections this job's stage reads (what ``print_config`` shows)."""
        from argsfw.stages import find_stage

        stage = find_stage(self.stage)
        if stage is None:
            return [f.name for f in fields(self) if is_dataclass(getattr(self, f.name))]
        return [*stage.sections, *([stage.section] if stage.section else [])]


_SCHEMAS: dict[str, type] = {}


def job_schema(stage: str | None = None) -> type:
    """`JobConfig` with a section for every registered stage's settings, and `stage`'s own when it
    is a stage of one's own (``pkg.module:STAGE``). Cached per stage of one's own."""
    from argsfw.stages import get_stage, stages

    own = [s for s in stages().values() if s.config is not None]
    if stage and ":" in stage:
        extra = get_stage(stage)
        if extra.config is not None:
            own.append(extra)
    key = stage if stage and ":" in stage else ""
    if key not in _SCHEMAS:
        extra_fields = [(s.section, s.config, field(default_factory=s.config)) for s in own]
        cls = make_dataclass("JobConfig", extra_fields, bases=(JobConfig,))
        cls.__module__ = __name__
        cls.__doc__ = JobConfig.__doc__
        _SCHEMAS[key] = cls
    return _SCHEMAS[key]
