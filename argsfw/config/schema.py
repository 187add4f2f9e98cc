"""The configuration schema: one structured-config dataclass per config group.

Every key has a type, a default and a one-line doc. Hydra composes YAML from ``configs/`` and ``recipes/``
against `JobConfig`; a key that is not here fails at start-up with its name. Values are then
checked by each dataclass's ``__post_init__`` (run by ``OmegaConf.to_object``), so library
code receives typed dataclasses, never an untyped DictConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from argsfw.data.config import DataConfig
from argsfw.decoding.config import SCORER_CHOICES, DecodeConfig
from argsfw.errors import ConfigError
from argsfw.eval.config import EvalConfig

STAGES = ("sft", "rm", "ppo", "predict", "evaluate", "pipeline")


def _choice(name: str, value: Any, options: tuple) -> None:
    if value not in options:
        raise ConfigError(
            f"{name}={value!r} is not valid; choose one of {', '.join(map(str, options))}"
        )


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


@dataclass
class LoraConfig:
    """LoRA adapters through peft; merged into the weights on export."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class ModelConfig:
    """The base model a fit stage starts from (when no `policy=` input is given)."""

    name: str = "tiny"  # a label for logs and run metadata
    base: str | None = None  # HF dir or hub id; None builds the tiny model from `tiny`
    tokenizer: str | None = None  # defaults to the base model's tokenizer
    dtype: str = "float32"  # weights dtype when loading (float32 | bfloat16 | float16)
    gradient_checkpointing: bool = False
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)


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
    checkpoint_every_n_steps: int = 0  # 0: only at epoch ends; >0 also every N optimizer steps


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

    def __post_init__(self) -> None:
        _choice("logger.name", self.name, ("wandb", "csv", "tensorboard", "none"))
        _choice("logger.mode", self.mode, ("auto", "online", "offline", "disabled"))


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
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"optim.batch_size={self.batch_size} is not a multiple of optim.micro_batch_size={self.micro_batch_size}"
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
class SFTConfig:
    """Supervised fine-tuning on prompt + response."""

    target: str = "chosen"  # chosen | both (train on both replies of each pair)
    loss_on_prompt: bool = False  # also train on prompt tokens


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
        for name in ("prefix_cuts", "val_prefix_cuts"):
            if getattr(self, name) < 0:
                raise ConfigError(f"rm.{name}={getattr(self, name)} must be >= 0")


@dataclass
class PPOConfig:
    """PPO with a critic, frozen reference and frozen reward model."""

    rollout_batch_size: int = 16  # prompts per rollout (per device)
    ppo_epochs: int = 2  # optimisation passes over each rollout batch
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int = 0
    kl_coef: float = 0.1
    kl_estimator: str = "k1"  # k1 | k3
    adaptive_kl: bool = False
    target_kl: float = 6.0
    kl_horizon: int = 10000
    gamma: float = 1.0
    lam: float = 0.95
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    vf_coef: float = 0.5
    critic_lr: float | None = None  # defaults to optim.lr
    whiten_advantages: bool = True

    def __post_init__(self) -> None:
        _choice("ppo.kl_estimator", self.kl_estimator, ("k1", "k3"))


@dataclass
class PredictConfig:
    """Options of ``python -m argsfw.predict`` that are not decoding settings."""

    # prompts over a context limit: skip | truncate (keep the last tokens) | error (stop before decoding)
    too_long: str = "skip"
    strict_tokenizer: bool = (
        False  # policy/RM tokenizers differ: error, not the cross-tokenizer scorer
    )
    legacy_json: bool = False  # also write outputs_original.json: [{prompt, response, method}]
    label: str | None = None  # this output's name in records and reports (default: from settings)
    log_every_n_batches: int = 10  # throughput metrics to the logger every N batches

    def __post_init__(self) -> None:
        _choice("predict.too_long", self.too_long, ("skip", "truncate", "error"))


@dataclass
class PipelineConfig:
    """Stages chained by ``python -m argsfw.pipeline``, each run in ``<run_dir>/<step>``.

    In any override, ``@sft``, ``@rm`` and ``@ppo`` stand for those steps' run directories.
    """

    sft: str | None = None  # fit recipe of the SFT policy
    rm: str | None = None  # fit recipe of the reward model
    ppo: str | None = None  # fit recipe of the PPO policy
    fit_overrides: list[str] = field(default_factory=list)  # applied to every fit step
    predict_recipe: str | None = None  # predict recipe every decode step starts from
    # step name -> its overrides ("-m" sweeps allowed)
    predict: dict[str, str] = field(default_factory=dict)
    predict_overrides: list[str] = field(default_factory=list)  # applied to every predict step
    evaluate: str | None = None  # evaluate recipe run over every predict output
    evaluate_overrides: list[str] = field(default_factory=list)


@dataclass
class JobConfig:
    """One run of one entry point. Stage inputs take an HF dir, an argsfw run dir or a hub id."""

    recipe: str = ""  # the recipe's name (set by composition)
    stage: str = ""  # sft | rm | ppo | predict | evaluate | pipeline
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
    sft: SFTConfig = field(default_factory=SFTConfig)
    rm: RMConfig = field(default_factory=RMConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)

    def __post_init__(self) -> None:
        if self.stage:
            _choice("stage", self.stage, STAGES)
        _choice("decode.scorer", self.decode.scorer, SCORER_CHOICES)
