"""Model inputs to concrete sources: a local HF dir, an argsfw run dir's ``hf/``, a hub id, ``packaged:``.

A stage input may name (1) a Hugging Face model directory, (2) an argsfw run directory, meaning
its exported ``hf/`` folder, (3) a hub id such as ``facebook/opt-1.3b`` or (4) ``packaged:<name>``,
a model shipped in an installed package. Local-looking paths that do not exist are reported as
missing paths rather than handed to the hub, where offline they would produce a misleading
"cannot connect" error.

What can be checked of a resolved input before its weights load is in `argsfw.models.preflight`;
the loading itself in `argsfw.models.loading`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from argsfw.models.packaged import PACKAGED_PREFIX


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
