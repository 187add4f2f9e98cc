"""The configuration schema: one structured-config dataclass per config group.

Every key has a type, a default and a one-line doc. Hydra composes YAML from ``configs/`` and ``recipes/``
against `JobConfig`; a key that is not here fails at start-up with its name. Values are then
checked by each dataclass's ``__post_init__`` (run by ``OmegaConf.to_object``), so library
code receives typed dataclasses, never an untyped DictConfig.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from argsfw.data.config import DataConfig
from argsfw.data.loading import check_data_config
from argsfw.decoding.config import SCORER_CHOICES, DecodeConfig, check_decode_settings
from argsfw.devices import parse_devices
from argsfw.errors import ConfigError
from argsfw.eval.config import EvalConfig, check_eval_config

STAGES = ("sft", "rm", "ppo", "arm", "token_rm", "predict", "evaluate", "pipeline")


def _choice(name: str, value: Any, options: tuple) -> None:
    if value not in options:
        raise ConfigError(
            f"{name}={value!r} is not valid; choose one of {', '.join(map(str, options))}"
        )


def _check(name: str, value: Any, ok: bool, valid: str) -> None:
    """Raise `ConfigError` naming ``name=value`` and the valid range unless `ok`."""
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range: it must be {valid}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_finite(node: Any, prefix: str = "") -> None:
    """Refuse NaN or ±inf in any float setting of a config tree: dataclasses, dicts and lists.

    Why one generic rule: an infinite value passes every ``> 0`` range check (``decode.temperature=inf``
    samples uniform noise and the run still ends DONE), and a per-key check misses the next key.
    Raises `ConfigError` naming the dotted key and the value.
    """
    dot = f"{prefix}." if prefix else ""
    if is_dataclass(node):
        items = [(dot + f.name, getattr(node, f.name)) for f in fields(node)]
    elif isinstance(node, dict):
        items = [(f"{dot}{k}", v) for k, v in node.items()]
    elif isinstance(node, (list, tuple)):
        items = [(f"{prefix}[{i}]", v) for i, v in enumerate(node)]
    else:
        return
    for key, value in items:
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}; set a finite value")
        check_finite(value, key)


def _positive(name: str, value: Any) -> None:
    _check(name, value, _number(value) and value > 0, "a finite number > 0")


def _non_negative(name: str, value: Any) -> None:
    _check(name, value, _number(value) and value >= 0, "a finite number >= 0")


def _at_least(name: str, value: Any, low: int) -> None:
    _check(name, value, isinstance(value, int) and value >= low, f"an integer >= {low}")


def _fraction(name: str, value: Any, closed_low: bool = True) -> None:
    ok = _number(value) and (0 <= value <= 1 if closed_low else 0 < value <= 1)
    _check(name, value, ok, "in [0, 1]" if closed_low else "in (0, 1]")


def _batches(name: str, value: Any) -> None:
    """A Lightning ``limit_*``/``val_check_interval`` value: None, an int >= 1 or a fraction in (0, 1]."""
    if value is None:
        return
    ok = (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value <= 1)
    _check(name, value, ok, "an integer >= 1 (batches) or a fraction in (0, 1]")


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
class SFTConfig:
    """Supervised fine-tuning on prompt + response."""

    target: str = "chosen"  # chosen | both (train on both replies of each pair)
    loss_on_prompt: bool = False  # also train on prompt tokens

    def __post_init__(self) -> None:
        _choice("sft.target", self.target, ("chosen", "both"))


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

    def __post_init__(self) -> None:
        _check("rm.margin", self.margin, _number(self.margin), "a finite number")
        _at_least("rm.prefix_cuts", self.prefix_cuts, 0)
        _at_least("rm.val_prefix_cuts", self.val_prefix_cuts, 0)


@dataclass
class ArmConfig:
    """GenARM's autoregressive RM: r(x, y) = Σ log π_r(y_t | x, y_<t), loss −log σ(β·Δr − margin)."""

    beta: float = 0.05  # scale of the reward gap in the loss (GenARM's HH-RLHF value)
    length_normalize: bool = False  # divide each reply's log-likelihood by its token count
    margin: float = 0.0  # ask β·(r_chosen − r_rejected) to exceed this

    def __post_init__(self) -> None:
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"arm.beta={self.beta} must be a finite number > 0 (GenARM: 0.05)")
        if not math.isfinite(self.margin):
            raise ConfigError(f"arm.margin={self.margin} must be finite")


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
        for key in ("rollout_batch_size", "ppo_epochs", "max_new_tokens", "kl_horizon"):
            _at_least(f"ppo.{key}", getattr(self, key), 1)
        _at_least("ppo.top_k", self.top_k, 0)
        for key in ("temperature", "target_kl", "clip_range", "clip_range_value"):
            _positive(f"ppo.{key}", getattr(self, key))
        _non_negative("ppo.kl_coef", self.kl_coef)
        _non_negative("ppo.vf_coef", self.vf_coef)
        _fraction("ppo.gamma", self.gamma)
        _fraction("ppo.lam", self.lam)
        if self.critic_lr is not None:
            _positive("ppo.critic_lr", self.critic_lr)


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
        _at_least("predict.log_every_n_batches", self.log_every_n_batches, 1)


@dataclass
class PipelineConfig:
    """Stages chained by ``python -m argsfw.pipeline``, each run in ``<run_dir>/<step>``.

    In any override, ``@NAME`` stands for fit step NAME's run directory. A fit step named
    ``sft`` gives every predict step its ``policy``, one named ``rm`` its ``reward_model``
    (and evaluate's); a step's own overrides (or a predict step's ``recipe=``) win.
    """

    # fit step name -> "RECIPE key=value ...", run in this order (a new stage is one more line)
    fit: dict[str, str] = field(default_factory=dict)
    fit_overrides: list[str] = field(default_factory=list)  # applied to every fit step
    predict_recipe: str | None = None  # predict recipe every decode step starts from
    # step name -> its overrides ("-m" sweeps allowed)
    predict: dict[str, str] = field(default_factory=dict)
    predict_overrides: list[str] = field(default_factory=list)  # applied to every predict step
    evaluate: str | None = None  # evaluate recipe run over every predict output
    evaluate_overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, spec in self.fit.items():
            if not str(spec or "").strip():
                raise ConfigError(
                    f"pipeline.fit.{name} is empty; give its fit recipe, e.g. {name}: tiny_{name}"
                )


@dataclass
class JobConfig:
    """One run of one entry point. Stage inputs take an HF dir, an argsfw run dir or a hub id."""

    recipe: str = ""  # the recipe's name (set by composition)
    stage: str = ""  # sft | rm | ppo | arm | token_rm | predict | evaluate | pipeline
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
    arm: ArmConfig = field(default_factory=ArmConfig)
    token_rm: TokenRMConfig = field(default_factory=TokenRMConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)

    def __post_init__(self) -> None:
        check_finite(self)  # first: the range checks below would let an infinite value through
        if self.stage:
            _choice("stage", self.stage, STAGES)
        _at_least("seed", self.seed, 0)
        if self.num_threads is not None:
            _at_least("num_threads", self.num_threads, 1)
        if self.resume and self.overwrite:
            raise ConfigError("resume=true and overwrite=true contradict each other; pass one")
        try:  # why re-raised: the library checks raise their packages' own ValueErrors
            check_data_config(self.data)
            check_eval_config(self.eval)
            if self.stage == "predict":
                # the checks that need no model; vocabulary and context follow once the models'
                # configs are read (argsfw.predict), before any weight loads
                check_decode_settings(self.decode, prefix="decode.")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        _choice("decode.scorer", self.decode.scorer, SCORER_CHOICES)
        if self.rm.cache_frozen and not self.model.train_top_layers:
            raise ConfigError(
                "rm.cache_frozen=true caches the frozen layers' outputs but nothing is frozen: "
                "set model.train_top_layers=N (e.g. 4)"
            )
        if self.model.train_top_layers and self.model.lora.enabled:
            raise ConfigError(
                "model.train_top_layers and model.lora.enabled are two ways to train part of the "
                "model; pass one"
            )
