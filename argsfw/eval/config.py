"""Schema of evaluation settings (the ``eval`` config group). Plain, OmegaConf-compatible."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from argsfw.errors import ConfigError

JUDGE_KINDS = ("openai", "hf")

# Metric names ``eval.metrics`` may list (the judge also runs with ``eval.judge.enabled``).
# "instruments": every RM's accuracy on the held-out pairs of `data` beside the length rule.
METRICS = ("reward", "diversity", "coherence", "cost", "judge", "oracle", "instruments")


@dataclass
class JudgeConfig:
    """Pairwise judge: an OpenAI-compatible endpoint or a local HF chat model. Keys from env only."""

    enabled: bool = False
    kind: str = "openai"  # openai | hf
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4"
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key (never the key)
    num_prompts: int = 100
    max_retries: int = 3
    baseline: str | None = None  # outputs file or name the others are compared against
    seed: int = 0
    api_key_file: str | None = None  # file holding the key; read at run time, never copied
    temperature: float = 0.7  # judge sampling temperature (the original's GPT-4 setting)
    max_tokens: int = 512  # longest judge reply (max_new_tokens for kind=hf)
    timeout: float = 60.0  # seconds per HTTP request before it counts as a connection failure
    max_consecutive_failures: int = 3  # connection failures (refused, timeout) in a row: stop
    max_retry_after: float = 60.0  # longest Retry-After (429 / 5xx) honoured, in seconds

    def __post_init__(self) -> None:
        if self.kind not in JUDGE_KINDS:
            raise ConfigError(
                f"eval.judge.kind={self.kind!r} is not valid; choose one of {', '.join(JUDGE_KINDS)}"
            )
        url = urlsplit(self.base_url or "")
        if self.kind == "openai" and (url.scheme not in ("http", "https") or not url.hostname):
            raise ConfigError(
                f"eval.judge.base_url={self.base_url!r} is not an http(s) URL; "
                "e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1"
            )
        for name, low in (("max_retries", 0), ("max_consecutive_failures", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"eval.judge.{name} must be >= {low}, got {getattr(self, name)}")
        if not self.timeout > 0 or self.max_retry_after < 0:
            raise ConfigError(
                f"eval.judge.timeout must be > 0 and eval.judge.max_retry_after >= 0 "
                f"(got {self.timeout}, {self.max_retry_after})"
            )


COST_AXES = ("flops", "tokens")


@dataclass
class EvalConfig:
    """Which metrics to compute over one or more predict outputs."""

    metrics: list[str] = field(default_factory=lambda: ["reward", "diversity", "coherence", "cost"])
    cut_at_human: bool = True  # cut continuations at the next "Human:" turn first
    reward_batch_size: int = 8
    max_reward_tokens: int = 1334  # texts this long or longer are skipped and counted
    diversity_plus_one: bool = True  # rep-n = 1 - unique/(total + 1), as the paper
    coherence_model: str = "default"  # "default" = packaged all-MiniLM-L6-v2; or a path / hub id
    coherence_max_tokens: int = 128
    coherence_pooling: str = "auto"  # auto | mean | cls (SimCSE pooler) | cls_before_pooler
    coherence_batch_size: int = 32  # texts per embedding batch
    device: str | None = None  # RM / embedder / HF judge device; None = cuda if any, else cpu
    reward_dtype: str = "float32"  # reward model dtype (float32 | bf16 | fp16)
    # a second reward model that scores every output and never guided a search (trained on a
    # disjoint split): does the guide RM's gain carry over? Reported as judge_reward ± se
    judge_reward_model: str | None = None
    # keep only the last N prompt tokens before scoring (what predict's data.max_prompt_length
    # let the policy and the guide RM read); None scores the whole prompt
    max_prompt_tokens: int | None = None
    # x axis of the cost plots: forward FLOPs per generated token (flops), or the token
    # positions both models computed per generated token (tokens)
    cost_axis: str = "flops"
    # label of a row (e.g. "greedy"): every row's judge-reward gain over it, plain and at equal
    # answer length (argsfw.eval.instruments.length_adjusted_gains)
    length_baseline: str | None = None
    judge: JudgeConfig = field(default_factory=JudgeConfig)


def check_eval_config(cfg: EvalConfig) -> None:
    """Check metric names, batch sizes and choices of `cfg`; raises `ValueError` naming the key."""
    unknown = sorted(set(cfg.metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"eval.metrics: unknown metric(s) {unknown}; choose from {list(METRICS)}")
    for key in (
        "reward_batch_size",
        "max_reward_tokens",
        "coherence_max_tokens",
        "coherence_batch_size",
    ):
        if getattr(cfg, key) < 1:
            raise ValueError(f"eval.{key} must be an integer >= 1, got {getattr(cfg, key)}")
    if cfg.max_prompt_tokens is not None and cfg.max_prompt_tokens < 1:
        raise ValueError(
            f"eval.max_prompt_tokens must be >= 1 or null, got {cfg.max_prompt_tokens}"
        )
    if cfg.cost_axis not in COST_AXES:
        raise ValueError(f"eval.cost_axis={cfg.cost_axis!r}; choose {' or '.join(COST_AXES)}")
    if cfg.coherence_pooling not in ("auto", "mean", "cls", "cls_before_pooler"):
        raise ValueError(
            f"eval.coherence_pooling={cfg.coherence_pooling!r}; choose auto, mean, cls or cls_before_pooler"
        )
