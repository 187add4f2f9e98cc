"""Model factory and loading: tiny models for CPU work, HF dirs / run dirs / hub ids for real ones."""

from argsfw.models.loading import (
    ModelPathError,
    TokenizerCompat,
    check_tokenizer_compat,
    cut_left,
    default_device,
    load_policy,
    load_reward_model,
    load_tokenizer,
    parse_dtype,
    resolve_model_path,
    special_wrap,
)
from argsfw.models.tiny import (
    TinySpec,
    build_tiny_policy,
    build_tiny_reward_model,
    make_tiny_kit,
    save_hf,
    train_tokenizer,
)

__all__ = [
    "ModelPathError",
    "TinySpec",
    "TokenizerCompat",
    "build_tiny_policy",
    "build_tiny_reward_model",
    "check_tokenizer_compat",
    "cut_left",
    "default_device",
    "load_policy",
    "load_reward_model",
    "load_tokenizer",
    "make_tiny_kit",
    "parse_dtype",
    "resolve_model_path",
    "save_hf",
    "special_wrap",
    "train_tokenizer",
]
