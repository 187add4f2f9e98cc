"""Export a trained stage as a plain Hugging Face directory, from any checkpoint.

``python -m argsfw.export CHECKPOINT OUT_DIR``
    CHECKPOINT is a Lightning ``.ckpt`` file or a DeepSpeed ZeRO checkpoint directory (as
    written in ``<run>/checkpoints/``). The stage is rebuilt from the run's ``config.yaml``
    (found next to ``checkpoints/``, or given with ``--config``), the weights loaded, and the
    stage's own export writes OUT_DIR (safetensors, config, tokenizer).

``python -m argsfw.export --from-deepspeed-chat CKPT OUT_DIR [--tokenizer TOK]``
    Imports a DeepSpeed-Chat reward checkpoint, as the original ARGS project shipped its OPT
    reward models: ``rwtranrsformer.*`` (sic) → ``model.*`` and ``v_head.weight`` →
    ``score.weight``, saved as an ``OPTForSequenceClassification`` with ``num_labels=1``.

Exit code 2 with one line for a missing or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from argsfw.config.run_dir import write_dir_atomic
from argsfw.errors import ConfigError, UsageError

_atomic_write = write_dir_atomic  # the name the fault tests import

if TYPE_CHECKING:  # torch loads only once the inputs are checked: bad paths fail in a second
    import torch

log = logging.getLogger("argsfw.export")

DS_CHAT_PREFIX = "rwtranrsformer."  # sic: the typo is in DeepSpeed-Chat's RewardModel
DS_CHAT_HEAD = "v_head.weight"


# The key under which a fit stores its stage in every Lightning checkpoint (`argsfw.trainer`).
STAGE_KEY = "argsfw_stage"


def lightning_state_dict(checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The LightningModule state dict in a ``.ckpt`` file or a ZeRO checkpoint directory.

    ZeRO shards are consolidated to fp32 with Lightning's converter. Raises `UsageError`
    when the path is neither.
    """
    return read_checkpoint(checkpoint)["state_dict"]


def read_checkpoint(checkpoint: str | os.PathLike) -> dict:
    """The whole Lightning checkpoint dict (``state_dict``, the stage under `STAGE_KEY` …).

    A ZeRO directory is consolidated to fp32 first. Raises `UsageError` for a path that is
    neither a ``.ckpt`` file nor a ZeRO directory, or a file torch cannot read.
    """
    import torch

    path = Path(checkpoint)
    if path.is_dir():
        _require_checkpoint(path)
        from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "fp32.ckpt"
            convert_zero_checkpoint_to_fp32_state_dict(str(path), str(out))
            return torch.load(out, map_location="cpu", weights_only=False)
    _require_checkpoint(path)
    # weights_only=False: a Lightning checkpoint holds loop and callback state, not only tensors;
    # only load checkpoints you trust (your own runs)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, not a torch file, unpickling error
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"checkpoint {path} cannot be read ({reason}): it is truncated or not a Lightning "
            "checkpoint; use another one from the run's checkpoints/ (e.g. last.ckpt)"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UsageError(f"{path} is not a Lightning checkpoint (no state_dict in it)")
    return ckpt


def checkpoint_stage(checkpoint: Path, ckpt: dict) -> str | None:
    """The stage that wrote `checkpoint`: its own `STAGE_KEY`, else the ``meta.json`` of the
    run directory it sits in (checkpoints of older fits); None when neither says."""
    if isinstance(ckpt.get(STAGE_KEY), str):
        return ckpt[STAGE_KEY]
    meta = checkpoint.resolve().parent.parent / "meta.json"
    try:
        stage = json.loads(meta.read_text()).get("stage") if meta.is_file() else None
    except (OSError, ValueError):
        return None
    return stage if isinstance(stage, str) else None


def _check_same_stage(checkpoint: Path, ckpt: dict, job, config: str | None) -> None:
    """Refuse a checkpoint of one stage exported with another stage's config (`UsageError`).

    Why before the module is built: loading an RM's weights into an SFT module fails deep in
    torch with the state-dict diff; the stages, read from the checkpoint, say it in one line.
    """
    stage = checkpoint_stage(checkpoint, ckpt)
    if stage is None or stage == job.stage:
        return
    cfg = config or checkpoint.resolve().parent.parent / "config.yaml"
    raise UsageError(
        f"checkpoint {checkpoint} is from a {stage} run, but the config {cfg} asks for the "
        f"{job.stage} stage; pass --config with the config.yaml of the {stage} run that wrote it"
    )


def _load_weights(module, state: dict, checkpoint: Path, job) -> None:
    """``module.load_state_dict(state)``; a mismatch (another model's weights) is a `UsageError`
    naming the first missing, unexpected or mis-shaped key instead of torch's multi-line diff."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        detail = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        first = detail[0][:200] if detail else str(exc)[:200]
        raise UsageError(
            f"checkpoint {checkpoint} does not fit the {job.stage} model its config builds "
            f"({first}); pass --config with the config.yaml of the run that wrote it"
        ) from None


def _require_checkpoint(path: Path) -> None:
    if path.is_dir():
        if not (path / "checkpoint").is_dir():
            raise UsageError(
                f"{path} is a directory but not a DeepSpeed checkpoint (no checkpoint/ inside)"
            )
    elif not path.is_file():
        raise UsageError(
            f"checkpoint {path} does not exist; pass a .ckpt file or a ZeRO checkpoint dir, "
            "e.g. <run_dir>/checkpoints/last.ckpt"
        )


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse to replace an existing non-empty directory unless `overwrite` (and then only an
    HF model directory, so a mistyped path never deletes unrelated files).

    Raises `UsageError` naming the directory and the options.
    """
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise UsageError(f"out_dir {out} is a file; name a directory to write")
    if not overwrite:
        raise UsageError(
            f"out_dir {out} already exists and is not empty; choose a new directory or pass "
            "--overwrite to replace it"
        )
    if not (out / "config.json").is_file():
        raise UsageError(
            f"out_dir {out} is not a Hugging Face model directory (no config.json); refusing to "
            "replace it even with --overwrite: choose a new directory"
        )


def _job_for(checkpoint: Path, config: str | None):
    from omegaconf import DictConfig, OmegaConf

    from argsfw.config.schema import job_schema
    from argsfw.stages import find_stage, names

    cfg_path = Path(config) if config else checkpoint.resolve().parent.parent / "config.yaml"
    if not cfg_path.is_file():
        raise UsageError(
            f"no run config at {cfg_path}: pass --config <run_dir>/config.yaml of the run that wrote {checkpoint}"
        )
    try:
        loaded = OmegaConf.load(cfg_path)
    except Exception as exc:  # yaml's scanner/parser errors, several lines each
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"run config {cfg_path} is not valid YAML ({first}); pass --config with the "
            "config.yaml a fit run wrote"
        ) from None
    stage = loaded.get("stage") if isinstance(loaded, DictConfig) else None
    found = find_stage(stage)
    if found is None or found.entry != "fit":
        what = f"the config of a {stage} run" if stage else "not a run config (no stage: key)"
        raise UsageError(
            f"--config {cfg_path} is {what}; export needs the config.yaml of a fit run "
            f"({', '.join(names('fit'))}): pass --config <fit run_dir>/config.yaml"
        )
    try:
        schema = job_schema(stage if ":" in stage else None)
        merged = OmegaConf.merge(OmegaConf.structured(schema), loaded)
        return OmegaConf.to_object(merged)
    except Exception as exc:  # a key the schema lacks, a value of the wrong type
        inner = exc.__cause__ or exc.__context__  # a __post_init__ check, wrapped by OmegaConf
        if isinstance(exc, ConfigError) or isinstance(inner, ConfigError):
            raise (inner if isinstance(inner, ConfigError) else exc) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"run config {cfg_path} does not fit argsfw's schema ({first}); pass --config with "
            "the config.yaml a fit run of this argsfw version wrote"
        ) from None


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Rebuild the stage of `checkpoint`'s run, load its weights and write the HF dir `out_dir`.

    Returns `out_dir`. Written through a temporary sibling and renamed, so a failure leaves no
    half-written directory. Raises `UsageError` for a missing or unreadable checkpoint, a
    missing run config, a checkpoint of another stage or model than the config's, or an
    existing non-empty `out_dir` without `overwrite`.
    """
    from argsfw.config.run_dir import RunDir
    from argsfw.modules import build_stage

    ckpt = Path(checkpoint)
    _require_checkpoint(ckpt)
    check_out_dir(Path(out_dir), overwrite)
    job = _job_for(ckpt, config)
    full = read_checkpoint(ckpt)
    _check_same_stage(ckpt, full, job, config)
    parts = build_stage(job, RunDir(ckpt.resolve().parent.parent))
    _load_weights(parts.module, full["state_dict"], ckpt, job)
    return write_dir_atomic(Path(out_dir), lambda tmp: parts.export(parts.module, tmp))


def _read_ds_chat_weights(path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    import torch

    files = (
        [path] if path.is_file() else [path / n for n in ("pytorch_model.bin", "model.safetensors")]
    )
    for f in files:
        if f.is_file():
            if f.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(f)), f.parent
            return torch.load(f, map_location="cpu", weights_only=True), f.parent
    raise UsageError(
        f"no DeepSpeed-Chat weights at {path}: pass the file, or the directory holding "
        "pytorch_model.bin or model.safetensors"
    )


def convert_ds_chat_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a DeepSpeed-Chat RewardModel state dict to `OPTForSequenceClassification` keys.

    Raises `UsageError` when the keys are not DeepSpeed-Chat's (no ``v_head.weight``).
    """
    if DS_CHAT_HEAD not in state:
        raise UsageError(
            f"not a DeepSpeed-Chat reward checkpoint: no {DS_CHAT_HEAD!r} among its keys"
        )
    out = {}
    for key, value in state.items():
        if key == DS_CHAT_HEAD:
            out["score.weight"] = value
        elif key.startswith(DS_CHAT_PREFIX):
            out["model." + key[len(DS_CHAT_PREFIX) :]] = value
        else:
            raise UsageError(f"unexpected key {key!r} in a DeepSpeed-Chat reward checkpoint")
    return out


def import_deepspeed_chat(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    tokenizer: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a DeepSpeed-Chat OPT reward checkpoint as an HF `OPTForSequenceClassification` dir.

    The OPT ``config.json`` is read beside the weights; the tokenizer from `tokenizer` (an HF
    dir or hub id), else from the checkpoint's directory. Returns `out_dir`.
    """
    import torch
    from transformers import AutoConfig, AutoTokenizer, OPTForSequenceClassification

    check_out_dir(Path(out_dir), overwrite)
    state, folder = _read_ds_chat_weights(Path(checkpoint))
    if not (folder / "config.json").is_file():
        raise UsageError(
            f"no config.json beside {checkpoint}: DeepSpeed-Chat saves the OPT config with the weights"
        )
    config = AutoConfig.from_pretrained(folder, num_labels=1)
    if config.model_type != "opt":
        raise UsageError(
            f"{checkpoint} holds a {config.model_type!r} model; DeepSpeed-Chat import supports OPT"
        )
    tok = AutoTokenizer.from_pretrained(tokenizer or folder)
    config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else config.pad_token_id
    with torch.device("meta"):
        model = OPTForSequenceClassification(config)
    missing, unexpected = model.load_state_dict(
        convert_ds_chat_state_dict(state), strict=False, assign=True
    )
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise UsageError(
            f"DeepSpeed-Chat checkpoint does not fit OPT: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    model.eval()

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    return write_dir_atomic(Path(out_dir), write)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for usage errors)."""
    p = argparse.ArgumentParser(
        prog="python -m argsfw.export", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "checkpoint", help="Lightning .ckpt, ZeRO checkpoint dir, or DeepSpeed-Chat weights"
    )
    p.add_argument("out_dir", help="Hugging Face directory to write")
    p.add_argument("--config", help="the run's config.yaml (default: next to checkpoints/)")
    p.add_argument(
        "--from-deepspeed-chat",
        action="store_true",
        help="import a DeepSpeed-Chat OPT reward model",
    )
    p.add_argument("--tokenizer", help="tokenizer dir or hub id (DeepSpeed-Chat import)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing HF directory at OUT_DIR"
    )
    p.add_argument("--verbose", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        if args.from_deepspeed_chat:
            out = import_deepspeed_chat(
                args.checkpoint, args.out_dir, args.tokenizer, args.overwrite
            )
        else:
            out = export_checkpoint(args.checkpoint, args.out_dir, args.config, args.overwrite)
    except Exception as exc:
        from argsfw.errors import is_usage_error

        if args.verbose:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"argsfw export: error: {msg}", file=sys.stderr)
        return 2 if is_usage_error(exc) or isinstance(exc, OSError) else 1
    print(f"exported {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
