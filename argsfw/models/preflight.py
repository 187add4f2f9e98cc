"""Checks of a model input that need no weights loaded: its head, weight files and tokenizer.

Each check resolves the input (`argsfw.models.paths.resolve_model_path`) and reads only
``config.json``, safetensors headers and file names, so a bad input fails at start-up, with the
fix, before minutes of loading. Hub ids pass the file checks (nothing local to read); the
loading-info check after the load (`argsfw.models.loading.check_loading_info`) still applies.
`check_tokenizer_compat` compares two loaded tokenizers, before either model's weights load.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from argsfw.models.paths import ModelPathError, resolve_model_path

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


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a local model directory: its index's shards, else every ``*.safetensors``."""
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

    for f in weight_files(path):
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
