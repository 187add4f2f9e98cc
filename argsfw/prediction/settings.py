"""What one predict run decodes: its settings, their fingerprint and their label.

``decode.config_file`` (the original code's settings file, one JSON object per line) fans a
run out into one output per line; `output_settings` is the fingerprint a run directory's
outputs must match to be resumed; `default_label` names the row in records, tables and plots.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from argsfw.callbacks.outputs import SELECTION_KEYS
from argsfw.config.run_dir import RunDir
from argsfw.decoding.config import decode_settings, sampling_temperature
from argsfw.decoding.registry import get_method
from argsfw.decoding.types import DecodeInputError, RewardKind
from argsfw.errors import ConfigError

# Settings every method shares that decide its outputs (the method's own knobs join them)
_COMMON = ("method", "max_new_tokens", "stop_at_eos", "seed")

# The original config file's keys -> decode settings (mode is mapped with resolve_method).
_ORIGINAL_KEYS = {
    "rm_weight": "weight",
    "topk": "topk",
    "mode": "method",
    "sample_temp": "temperature",
    "chunk_size": "chunk_size",
    "max_new_token": "max_new_tokens",
}

_EXAMPLE = '{"rm_weight": 1.5, "topk": 10, "mode": "greedy", "sample_temp": null}'

# What each key's JSON value must be: a string "1.5" would pass and fail in the first batch.
_ORIGINAL_TYPES = {
    "rm_weight": "a finite number",
    "topk": "an integer",
    "mode": "a string",
    "sample_temp": "a finite number or null",
    "chunk_size": 'an integer or "auto"',
    "max_new_token": "an integer",
}


def _typed(key: str, value) -> bool:
    import math

    if isinstance(value, bool):
        return False
    if key in ("rm_weight", "sample_temp"):
        return isinstance(value, (int, float)) and math.isfinite(value)
    if key == "mode":
        return isinstance(value, str)
    return isinstance(value, int) or (key == "chunk_size" and value == "auto")


def read_config_file(path: str, base=None) -> list[dict]:
    """Decode settings of the original's config file: one JSON object per line.

    Returns one dict of `DecodeConfig` overrides per non-empty line, each value typed and, with
    `base` (the job's `DecodeConfig`), the line's settings range-checked on top of it.
    Raises `ConfigError` naming the file, line and key for a missing file, bad JSON, an unknown
    key, a value of the wrong type or out of range.
    """
    from argsfw.decoding.config import check_decode_settings

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(
            f"decode.config_file {path!r} does not exist; name a file with one JSON object per line, e.g. {_EXAMPLE}"
        )
    out: list[dict] = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{path}:{lineno}: not valid JSON ({e.msg}, column {e.colno}); expected e.g. {_EXAMPLE}"
            ) from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}:{lineno}: expected a JSON object like {_EXAMPLE}")
        unknown = sorted(set(obj) - set(_ORIGINAL_KEYS))
        if unknown:
            raise ConfigError(
                f"{path}:{lineno}: unknown key(s) {unknown}; allowed: {', '.join(_ORIGINAL_KEYS)}"
            )
        for key, value in obj.items():
            if value is not None and not _typed(key, value):
                raise ConfigError(
                    f"{path}:{lineno}: {key}={json.dumps(value)} must be {_ORIGINAL_TYPES[key]}; "
                    f"fix the value, e.g. {_EXAMPLE}"
                )
        setting = {_ORIGINAL_KEYS[k]: v for k, v in obj.items() if v is not None}
        try:
            if "method" in setting:
                try:
                    found = get_method(setting["method"], original_api=True)
                    setting["method"] = found.name
                except DecodeInputError as exc:
                    raise DecodeInputError(f"mode={json.dumps(obj['mode'])}: {exc}") from None
            if base is not None:
                check_decode_settings(line_settings(base, setting))
        except DecodeInputError as exc:
            # the engine names its own field (weight); the file's user knows the key (rm_weight)
            msg = str(exc)
            for key, name in _ORIGINAL_KEYS.items():
                if msg.startswith(f"{name} ") and key in obj:
                    msg = key + msg[len(name) :]
            raise ConfigError(f"{path}:{lineno}: {msg}") from None
        out.append(setting)
    if not out:
        raise ConfigError(
            f"decode.config_file {path!r} holds no settings (one JSON object per line, e.g. {_EXAMPLE})"
        )
    return out


def line_settings(base, setting: dict):
    """The decode settings of one config-file line on top of `base`: the line's method (else
    `base`'s) with the shared keys and same-named knobs of `base`, then the line's values; a
    value the method does not read is dropped, as the original code ignored it."""
    values = {k: v for k, v in setting.items() if k != "method"}
    method = setting.get("method", base.method)
    return decode_settings(method, base, lenient=True, **{**values, "config_file": None})


def expand_settings(job, run: RunDir) -> list[tuple[object, RunDir]]:
    """``[(job, run)]``, or one ``(job, run_dir/config_<i>)`` per line of ``decode.config_file``."""
    from dataclasses import replace

    if not job.decode.config_file:
        return [(job, run)]
    settings = read_config_file(job.decode.config_file, job.decode)
    jobs = []
    for i, s in enumerate(settings):
        decode = line_settings(job.decode, s)
        jobs.append((replace(job, decode=decode), RunDir(run.path / f"config_{i}")))
    return jobs


def needs_reward_model(settings) -> bool:
    """True when the decode settings read a guide model (a needed model whose knob is not 0)."""
    return get_method(settings.method).uses_guide(settings)


def is_token_level(settings) -> bool:
    """True for the methods guided by a token-level RM (a causal LM: GenARM's ARM, a token head)."""
    return get_method(settings.method).token_level


def output_settings(job) -> dict:
    """The settings that decide a run's outputs (not batch size, devices or logging).

    Of the decode settings, those every method shares and the knobs the method reads: a knob it
    ignores does not split runs (`argsfw.callbacks.outputs` compares only these, so runs
    recorded with every knob keep resuming). The scorer is left out: every scorer gives the
    reference's rewards (verified by the probe).
    """
    method = get_method(job.decode.method)
    keep = (*_COMMON, *method.knobs)
    decode = {k: v for k, v in asdict(job.decode).items() if k in keep}
    if "temperature" in decode:
        decode["temperature"] = sampling_temperature(job.decode)  # None: the method's default
    # limit / offset / run_percent choose which prompts: a run of another selection must not
    # share the directory (a larger limit may continue it: see callbacks.outputs._comparable);
    # the carve, the chat rendering and the prompt cut change what each prompt is
    keys = ("source", "path", "eval_split", "fields", "seed", *SELECTION_KEYS)
    data = {k: getattr(job.data, k) for k in keys}
    rm = _norm_path(job.reward_model) if needs_reward_model(job.decode) else None
    return {
        "decode": decode,
        "data": data,
        "policy": _norm_path(job.policy),
        "reward_model": rm,
        "dtype": job.model.dtype,
        "precision": str(job.trainer.precision),
        "too_long": job.predict.too_long,
    }


def _norm_path(spec: str | None) -> str | None:
    return os.path.abspath(spec) if spec and os.path.exists(spec) else spec


def default_label(job) -> str:
    """``predict.label``, else the method's label of the settings (``args-greedy w=1.5 k=10``)."""
    if job.predict.label:
        return job.predict.label
    method = get_method(job.decode.method)
    label = method.label_of(job.decode)
    head = method.token_level and RewardKind(method.needs).token_head
    mode = _token_rm_mode(job.reward_model) if head else None
    # which token-level head guided it (FaRMA-style pairs, distilled, or a DPO run's implicit
    # reward), so rows do not collide
    return label.replace(method.name, f"{method.name}({mode})", 1) if mode else label


def _token_rm_mode(spec: str | None) -> str | None:
    """``token_rm_mode`` ("bt" | "distill") from a token-level RM run's meta.json, or ``"dpo"``
    for a DPO run (its implicit reward), if there is one."""
    from argsfw.models.reward_kind import is_dpo_export

    for meta in (Path(spec or "") / "meta.json", Path(spec or "") / "hf" / "meta.json"):
        try:
            info = json.loads(meta.read_text())
            mode = info.get("token_rm_mode") or ("dpo" if is_dpo_export(info) else None)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(mode, str):
            return mode
    return None
