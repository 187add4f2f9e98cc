"""Loading policies, reward models and tokenizers from a model input, refusing weights that do not fit.

The input is resolved first (`argsfw.models.paths`) and the checks that need no weights run
before the load (`argsfw.models.preflight`); after it, `check_loading_info` refuses weights
left freshly initialised or belonging to another head.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from argsfw.models.paths import ModelPathError, resolve_model_path
from argsfw.models.preflight import (
    CAUSAL_LM,
    SEQ_CLS,
    check_head,
    check_tokenizer_files,
    check_weights,
    weight_files,
)

log = logging.getLogger(__name__)

DTYPES = {
    "auto": "auto",
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str:
    """Map a dtype name (``"bf16"``, ``"float16"``, ``"auto"`` …) to a torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}") from None


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


# Top-level module names of sequence-classification heads across transformers families: the
# weights a reward model started from a causal LM or an encoder may lack (they start new).
HEAD_MODULES = ("score", "classifier", "pre_classifier", "classification_head", "pooler")


def load_tokenizer(spec: str | os.PathLike, what: str = "tokenizer"):
    """Load the tokenizer stored with a model input (see `resolve_model_path`).

    Raises `ModelPathError` when a local directory holds no tokenizer or it cannot be loaded.
    """
    from transformers import AutoTokenizer

    path = resolve_model_path(spec, what)
    check_tokenizer_files(path, what)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ModelPathError):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelPathError(
            f"the tokenizer of {what} {path!r} cannot be loaded: {reason}"
        ) from None


def _head_keys(keys, model) -> list[str]:
    prefix = getattr(model, "base_model_prefix", "") or ""
    return sorted(k for k in keys if not prefix or k.split(".", 1)[0] != prefix)


def _stored_summary(path: str, prefix: str) -> str:
    """What a local checkpoint holds: its head tensors by name, its body as a count."""
    folder = Path(path)
    if not folder.is_dir():
        return "a hub checkpoint"
    from safetensors import safe_open

    keys: list[str] = []
    for f in weight_files(folder):
        with safe_open(str(f), framework="pt") as st:
            keys.extend(st.keys())
    body = [k for k in keys if k.split(".", 1)[0] == prefix]
    heads = sorted(set(keys) - set(body))
    return f"{len(body)} body tensors" + (
        f" and {', '.join(heads[:4])}" if heads else " and no head"
    )


def check_loading_info(info: dict, model, spec, what: str, new_head: bool = False) -> None:
    """Refuse a load that left weights freshly initialised or found another head's weights.

    `info` is ``from_pretrained(..., output_loading_info=True)``'s. With `new_head` (a reward
    model started from a policy) the head may be new; the body never. Tied weights are not
    reported missing by transformers, so they pass. Raises `ModelPathError` naming the weights
    and what the directory holds.
    """
    missing = sorted(info.get("missing_keys") or ())
    unexpected = sorted(info.get("unexpected_keys") or ())
    mismatched = sorted(
        str(m[0] if isinstance(m, tuple) else m) for m in info.get("mismatched_keys") or ()
    )
    if new_head:
        missing = [k for k in missing if k not in _head_keys(missing, model)]
        unexpected = [k for k in unexpected if k not in _head_keys(unexpected, model)]
    bad_unexpected = _head_keys(unexpected, model)
    if unexpected and not bad_unexpected:
        log.warning(
            "%s %s: %d unused weights in the checkpoint (e.g. %s)",
            what,
            spec,
            len(unexpected),
            unexpected[0],
        )
    if not (missing or bad_unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(
            f"lacks {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''} (would be initialised at random)"
        )
    if bad_unexpected:
        parts.append(f"has weights of another head ({', '.join(bad_unexpected[:4])})")
    if mismatched:
        parts.append(f"has weights of the wrong shape ({', '.join(mismatched[:4])})")
    raise ModelPathError(
        f"{what} {os.fspath(spec)!r} does not fit a {type(model).__name__}: it {'; it '.join(parts)}; "
        f"the directory holds {_stored_summary(os.fspath(spec), getattr(model, 'base_model_prefix', ''))}; "
        f"pass a model saved as {type(model).__name__}"
    )


def load_checked(
    auto_cls, spec, what, dtype=None, new_head: bool = False, return_info: bool = False, **kwargs
):
    """``auto_cls.from_pretrained`` of a model input, refusing weights that do not fit the head.

    Checks the safetensors headers first (`check_weights`), then the loading info
    (`check_loading_info`). Raises `ModelPathError`.
    """
    path = resolve_model_path(spec, what)
    check_weights(path, what)
    if (
        not (Path(path) / "config.json").is_file()
        and (Path(path) / "adapter_config.json").is_file()
    ):
        model = auto_cls.from_pretrained(path, dtype=parse_dtype(dtype), **kwargs)  # a peft adapter
        return (model, {}) if return_info else model
    model, info = auto_cls.from_pretrained(
        path, dtype=parse_dtype(dtype), output_loading_info=True, **kwargs
    )
    check_loading_info(info, model, path, what, new_head=new_head)
    return (model, info) if return_info else model


def _load(auto_cls, spec, what, dtype, device, head, **kwargs):
    check_head(spec, what, head)
    model = load_checked(auto_cls, spec, what, dtype, **kwargs)
    if device is not None:
        model = model.to(device)
    return model.eval()


def load_policy(spec: str | os.PathLike, dtype="float32", device: str | None = None):
    """Load a causal LM (`AutoModelForCausalLM`) in eval mode on `device`.

    Raises `ModelPathError` for a bad path, unreadable weights or a checkpoint of another head.
    """
    from transformers import AutoModelForCausalLM

    return _load(AutoModelForCausalLM, spec, "policy", dtype, device, CAUSAL_LM)


def load_reward_model(
    spec: str | os.PathLike, dtype="float32", device: str | None = None, tokenizer=None
):
    """Load a scalar reward model (`AutoModelForSequenceClassification`, ``num_labels=1``).

    A reward model whose config has no pad token id gets one (the tokenizer's pad, else its
    EOS), logged, so batched scoring finds each row's last token.
    """
    from transformers import AutoModelForSequenceClassification

    model = _load(AutoModelForSequenceClassification, spec, "reward model", dtype, device, SEQ_CLS)
    if model.config.num_labels != 1:
        raise ModelPathError(
            f"reward model {spec!r} has num_labels={model.config.num_labels}; a reward model needs "
            "num_labels=1: pass a scalar reward model (e.g. a run of python -m argsfw.fit recipe=tiny_rm)"
        )
    if model.config.pad_token_id is None:
        tok = tokenizer or load_tokenizer(spec)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        log.warning("reward model %s has no pad_token_id; using %s", spec, pad)
        model.config.pad_token_id = pad
    return model
