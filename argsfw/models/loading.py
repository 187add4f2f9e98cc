"""Loading policies, reward models and tokenizers from a local HF dir, a run dir or a hub id.

A stage input may name (1) a Hugging Face model directory, (2) an argsfw run directory, meaning
its exported ``hf/`` folder, or (3) a hub id such as ``facebook/opt-1.3b``. Local-looking paths
that do not exist are reported as missing paths rather than handed to the hub, where offline
they would produce a misleading "cannot connect" error.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from argsfw.models.packaged import PACKAGED_PREFIX

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


class ModelFileError(ModelPathError):
    """The model directory is there but one of its files is broken (re-save it, not re-train)."""


def packaged_model_path(name: str) -> str:
    """Directory of a model shipped in an installed package (see `argsfw.models.packaged`).

    Raises `ModelPathError` for an unknown name or a package that is not installed.
    """
    from argsfw.models.packaged import PackagedModelError
    from argsfw.models.packaged import packaged_model_path as _path

    try:
        return _path(name)
    except PackagedModelError as exc:
        raise ModelPathError(str(exc)) from None


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
        for d in (p, p / "hf"):
            if (d / "config.json").is_file():
                _check_config_json(d / "config.json", what)
                return str(d)
        if (p / "adapter_config.json").is_file():
            return str(p)
        raise ModelPathError(
            f"{what} path {s!r} exists but holds no config.json (nor hf/config.json of an argsfw run): "
            "point it at a Hugging Face model directory or a finished fit run"
        )
    if _looks_local(s):
        raise ModelPathError(
            f"{what} path {s!r} does not exist; pass a Hugging Face directory, an argsfw run directory or a hub id 'org/name'"
        )
    if _hub_offline() and not _in_hub_cache(s):
        raise ModelPathError(
            f"{what} {s!r} is neither a local directory nor a hub model in the local cache "
            "(HF_HUB_OFFLINE=1): check the path, or download the model first"
        )
    return s  # a hub id: transformers resolves it


def _check_config_json(path: Path, what: str) -> None:
    # why here: transformers reports a broken config.json as a multi-line OSError far from the file
    try:
        ok = isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
        reason = "not a JSON object"
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        ok, reason = False, getattr(exc, "msg", None) or type(exc).__name__
        if isinstance(exc, json.JSONDecodeError):
            reason += f", line {exc.lineno} column {exc.colno}"
    if not ok:
        raise ModelFileError(
            f"{what} config {str(path)!r} is not valid JSON ({reason}); re-save the model with "
            "save_pretrained or re-export it"
        )


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


# Top-level module names of sequence-classification heads across transformers families: the
# weights a reward model started from a causal LM or an encoder may lack (they start new).
HEAD_MODULES = ("score", "classifier", "pre_classifier", "classification_head", "pooler")
# Files any one of which holds a tokenizer's vocabulary (what `AutoTokenizer` can load from).
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
    "sentencepiece.bpe.model", "tokenizer.tiktoken",
)  # fmt: skip
# The heads a checkpoint is saved for, by the suffix of its config's ``architectures``.
CAUSAL_LM, SEQ_CLS = "causal-lm", "sequence-classifier"
_HEAD_SUFFIXES = {
    CAUSAL_LM: ("ForCausalLM", "LMHeadModel"),
    SEQ_CLS: ("ForSequenceClassification",),
}
# Heads that can never serve as the wanted one. Only these are refused from config.json; other
# architectures (e.g. *ForConditionalGeneration chat models) are left to the loading-info check.
_OTHER_HEADS = ("ForTokenClassification", "ForQuestionAnswering", "ForMultipleChoice")
_REFUSED = {
    CAUSAL_LM: (*_HEAD_SUFFIXES[SEQ_CLS], *_OTHER_HEADS),
    SEQ_CLS: (*_HEAD_SUFFIXES[CAUSAL_LM], *_OTHER_HEADS),
}
_HEAD_ADVICE = {
    CAUSAL_LM: "pass a causal LM (*ForCausalLM, e.g. an SFT run such as runs/tiny_sft)",
    SEQ_CLS: "pass a scalar reward model (*ForSequenceClassification with num_labels=1, e.g. a "
    "reward-model run such as runs/tiny_rm)",
}


def _local_dir(spec: str | os.PathLike, what: str) -> Path | None:
    """The resolved local model directory of `spec`, or None for a hub id."""
    path = Path(resolve_model_path(spec, what))
    return path if path.is_dir() else None


def _architectures(path: Path) -> list[str]:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    archs = config.get("architectures") if isinstance(config, dict) else None
    return [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []


def check_head(spec: str | os.PathLike, what: str, head: str) -> None:
    """Refuse a local checkpoint saved for another head, from its ``config.json`` alone.

    A reward model named as the policy would get a freshly initialised LM head (and decode
    noise); a causal LM named as the reward model a random score head. Raises `ModelPathError`
    naming the architecture found and the kind of model to pass. Hub ids and configs without
    ``architectures`` pass (the loading-info check in `load_policy`/`load_reward_model` follows).
    """
    path = _local_dir(spec, what)
    archs = _architectures(path) if path is not None else []
    if not archs or not all(a.endswith(_REFUSED[head]) for a in archs):
        return
    other = next(
        (h for h, sfx in _HEAD_SUFFIXES.items() if h != head and archs[0].endswith(sfx)), None
    )
    kind = {CAUSAL_LM: "a causal language model", SEQ_CLS: "a sequence classifier (reward model)"}
    found = kind.get(other, f"saved as {', '.join(archs)}")
    raise ModelPathError(
        f"{what} {os.fspath(spec)!r} is {found} (config.json architectures: {', '.join(archs)}); "
        f"{_HEAD_ADVICE[head]}"
    )


def _weight_files(path: Path) -> list[Path]:
    index = sorted(path.glob("*.safetensors.index.json"))
    if index:
        try:
            shards = json.loads(index[0].read_text(encoding="utf-8")).get("weight_map", {}).values()
        except (OSError, ValueError) as exc:
            raise ModelPathError(
                f"{index[0]} cannot be read ({exc}); re-export or re-download the model"
            ) from None
        return [path / name for name in sorted(set(shards))]
    return sorted(path.glob("*.safetensors"))


def check_weights(spec: str | os.PathLike, what: str) -> None:
    """Read the header of every safetensors file of a local model directory (no tensor data).

    Raises `ModelPathError` naming the file when a shard is missing, truncated or corrupt, so a
    bad download fails at start-up with the fix rather than deep in a run.
    """
    path = _local_dir(spec, what)
    if path is None:
        return
    from safetensors import safe_open

    for f in _weight_files(path):
        if not f.is_file():
            raise ModelPathError(
                f"{what} weights {f} are missing (listed in the safetensors index): copy the "
                "whole model directory again, or re-export it with python -m argsfw.export"
            )
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except Exception as exc:  # SafetensorError (a plain Exception subclass) and OSError
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelPathError(
                f"{what} weights {f} cannot be read ({reason}): the file is truncated or corrupt; "
                "re-export it (python -m argsfw.export CKPT DIR) or copy/download it again"
            ) from None


def check_tokenizer_files(spec: str | os.PathLike, what: str) -> None:
    """Refuse a local model directory that holds no tokenizer, naming the files looked for.

    Raises `ModelPathError` saying how to add one.
    """
    path = _local_dir(spec, what)
    if path is None or any((path / name).is_file() for name in TOKENIZER_FILES):
        return
    raise ModelPathError(
        f"{what} directory {str(path)!r} holds no tokenizer (none of {', '.join(TOKENIZER_FILES[:4])} …): "
        f"save the model's tokenizer there (tokenizer.save_pretrained({str(path)!r})) or name a "
        "directory that has one"
    )


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
    for f in _weight_files(folder):
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
