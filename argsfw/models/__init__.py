"""Model factory and loading: tiny models for CPU work, HF dirs / run dirs / hub ids for real ones.

`paths` resolves a model input to a concrete source, `preflight` checks what can be checked
before weights load, `loading` loads (and checks what the load left), `special_tokens` wraps
and truncates encoded texts.
"""

from argsfw.models.loading import (
    default_device,
    load_checked,
    load_policy,
    load_reward_model,
    load_tokenizer,
    parse_dtype,
)
from argsfw.models.paths import ModelFileError, ModelPathError, resolve_model_path
from argsfw.models.preflight import (
    CAUSAL_LM,
    SEQ_CLS,
    TokenizerCompat,
    check_head,
    check_tokenizer_compat,
    check_tokenizer_files,
    check_weights,
)
from argsfw.models.special_tokens import cut_left, special_wrap
from argsfw.models.tiny import (
    TinySpec,
    build_tiny_policy,
    build_tiny_reward_model,
    build_tiny_token_reward_model,
    make_tiny_kit,
    save_hf,
    train_tokenizer,
)

__all__ = [
    "CAUSAL_LM",
    "SEQ_CLS",
    "ModelFileError",
    "ModelPathError",
    "TinySpec",
    "TokenizerCompat",
    "build_tiny_policy",
    "build_tiny_reward_model",
    "check_head",
    "build_tiny_token_reward_model",
    "check_tokenizer_compat",
    "check_tokenizer_files",
    "check_weights",
    "cut_left",
    "default_device",
    "load_checked",
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
