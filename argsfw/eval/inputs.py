"""Reading generation outputs for evaluation: argsfw predict JSONL and the original's JSON list.

Two layouts are accepted, told apart by content rather than by file name:

- argsfw predict output: JSONL, one object per prompt with ``prompt``, ``result`` (the
  continuation), ``response`` (prompt + continuation), ``method``, ``mode``, ``settings``
  (the method's knobs), ``n_new_tokens``, ``seconds`` and a ``stats`` dict. Its run
  directory holds ``config.yaml``, ``meta.json`` and, once finished, a ``DONE`` marker.
- the original project's evaluation layout: a JSON list of ``{prompt, response, method}``
  where ``response`` includes the prompt.

An input is named as the file, its run directory (``<run_dir>/outputs.jsonl``) or
``name=path`` to choose the label shown in tables and plots.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OUTPUTS_FILE = "outputs.jsonl"
DONE_MARKER = "DONE"
_HUMAN_ANY_CASE = re.compile("human:", flags=re.IGNORECASE)
_TURN_MARKERS = ("###Human:", "\n\nHuman:")


class EvalInputError(ValueError):
    """An evaluation input is missing or malformed. The message is one line naming the file."""


@dataclass
class EvalRecord:
    """One prompt's generation. ``continuation`` is the generated text without the prompt."""

    prompt: str
    continuation: str
    method: str | None = None
    id: Any = None
    n_new_tokens: int | None = None
    seconds: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalInput:
    """One outputs file: its label, records and decode setting (from the run config or records)."""

    label: str
    path: Path
    records: list[EvalRecord]
    method: str | None = None
    complete: bool | None = None  # None: not a run directory, completeness unknown
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(
        default_factory=dict
    )  # the method's knobs (its Method.settings)


def cut_at_human(text: str) -> str:
    """Cut at the first ``human:`` in any case, as the original's reward script did."""
    return _HUMAN_ANY_CASE.split(text, maxsplit=1)[0]


def cut_at_turn(text: str) -> str:
    """Cut at the first ``"###Human:"`` then ``"\\n\\nHuman:"`` (the original's diversity,
    coherence and judge cleaning). An empty result becomes ``" "``, as in the original."""
    for marker in _TURN_MARKERS:
        text = text.split(marker)[0]
    return text if text else " "


def split_spec(spec: str | os.PathLike) -> tuple[str | None, Path]:
    """Split ``name=path`` into ``(name, path)``; a plain path gives ``(None, path)``.

    A spec is only split when it is not itself an existing path and the part before ``=``
    holds no path separator, so paths containing ``=`` keep working.
    """
    s = os.fspath(spec)
    if "=" in s and not Path(s).exists():
        name, path = s.split("=", 1)
        if name and "/" not in name and os.sep not in name:
            return name, Path(path)
    return None, Path(s)


def resolve_outputs_path(path: Path) -> Path:
    """Return the outputs file for a file or a predict run directory.

    Raises:
        EvalInputError: the path does not exist, or a directory holds no ``outputs.jsonl``.
    """
    if not path.exists():
        raise EvalInputError(f"outputs file {str(path)!r} does not exist")
    if path.is_dir():
        candidate = path / OUTPUTS_FILE
        if not candidate.is_file():
            raise EvalInputError(
                f"directory {str(path)!r} holds no {OUTPUTS_FILE} (expected a predict run directory)"
            )
        return candidate
    return path


def _read_objects(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Parse a JSON list or JSONL file into ``(where, object)`` pairs; ``where`` names the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EvalInputError(f"{path}: cannot read ({e})") from None
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise EvalInputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        pairs = [(f"{path}: item {i}", obj) for i, obj in enumerate(items)]
    else:
        pairs = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                pairs.append((f"{path}:{lineno}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise EvalInputError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
    for where, obj in pairs:
        if not isinstance(obj, dict):
            raise EvalInputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return pairs


def _to_record(where: str, obj: dict[str, Any], warnings: list[str]) -> EvalRecord:
    """Build an `EvalRecord`, taking the continuation from ``result`` or ``response``."""
    prompt = obj.get("prompt")
    if not isinstance(prompt, str):
        raise EvalInputError(f"{where}: missing or non-string field 'prompt'")
    if isinstance(obj.get("result"), str):
        continuation = obj["result"]
    elif isinstance(obj.get("response"), str):
        response = obj["response"]
        if response.startswith(prompt):
            continuation = response[len(prompt) :]
        else:  # why: keep going, but say so; the original would have silently cut len(prompt) chars
            continuation = response
            warnings.append(f"{where}: 'response' does not start with the prompt; used it whole")
    else:
        raise EvalInputError(f"{where}: needs a string 'result' or 'response' field")
    seconds = obj.get("seconds", obj.get("elapsed"))
    return EvalRecord(
        prompt=prompt,
        continuation=continuation,
        method=obj.get("method"),
        id=obj.get("id"),
        n_new_tokens=obj.get("n_new_tokens"),
        seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
        stats=obj.get("stats") if isinstance(obj.get("stats"), dict) else {},
    )


def _run_setting(run_dir: Path, first: dict[str, Any]) -> dict[str, Any]:
    """``{"method": ..., **knobs}`` from the run's ``config.yaml`` (``decode`` section), else a record."""
    setting = _read_knobs(first)
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file():
        try:
            import yaml

            cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
            decode = cfg.get("decode", cfg) if isinstance(cfg, dict) else {}
            if isinstance(decode, dict) and decode.get("method"):
                setting = _read_knobs(decode)
        except Exception as e:  # why: a label is cosmetic; a bad config must not stop evaluation
            log.warning("could not read %s for labels: %s", cfg_path, e)
    return setting


def _read_knobs(source: dict[str, Any]) -> dict[str, Any]:
    """``{"method": ..., **knobs}``: the knobs the method reads, from a record's ``settings`` or,
    for a config's decode section or a record written before records had one, its top level."""
    from argsfw.decoding.registry import find_method

    method = find_method(source.get("method"))
    own = source.get("settings") if isinstance(source.get("settings"), dict) else source
    if method is None:
        return {"method": source.get("method")}
    return {"method": source.get("method"), **{k: own[k] for k in method.knobs if k in own}}


def make_label(setting: dict[str, Any], fallback: str) -> str:
    """The label the setting's method gives it (what predict writes), else `fallback`."""
    from argsfw.decoding.config import decode_settings
    from argsfw.decoding.registry import find_method

    method = find_method(setting.get("method"))
    if method is None:
        return str(setting.get("method") or fallback)
    knobs = {k: v for k, v in setting.items() if k != "method"}
    try:
        return method.label_of(decode_settings(method, lenient=True, **knobs))
    except (TypeError, ValueError):  # a record without the knob its label shows
        return method.name


def load_outputs(spec: str | os.PathLike) -> EvalInput:
    """Read one outputs input (``path``, run directory or ``name=path``).

    Returns:
        The records with a label and decode setting; ``complete`` is False (and a warning
        logged) when the file sits in a predict run directory without a ``DONE`` marker.

    Raises:
        EvalInputError: missing file, unreadable or malformed content (naming file and line),
            or no records at all.
    """
    name, raw = split_spec(spec)
    path = resolve_outputs_path(raw)
    warnings: list[str] = []
    pairs = _read_objects(path)
    if not pairs:
        raise EvalInputError(f"{path}: holds no records")
    records = [_to_record(where, obj, warnings) for where, obj in pairs]
    run_dir = path.parent
    is_run = (run_dir / "config.yaml").is_file() or (run_dir / "meta.json").is_file()
    complete = (run_dir / DONE_MARKER).exists() if is_run else None
    if complete is False:
        warnings.append(
            f"{run_dir}: run not marked complete (no {DONE_MARKER}); outputs may be partial"
        )
    for w in warnings:
        log.warning("%s", w)
    setting = _run_setting(run_dir, pairs[0][1]) if is_run else _read_knobs(pairs[0][1])
    stem = path.parent.name if path.name == OUTPUTS_FILE else path.stem
    # An explicit name=path wins, then the label predict wrote (predict.label), then the setting.
    recorded = pairs[0][1].get("label")
    label = name or (recorded if isinstance(recorded, str) and recorded else None)
    label = label or make_label(setting, stem)
    return EvalInput(
        label,
        path,
        records,
        setting["method"],
        complete,
        warnings,
        settings={k: v for k, v in setting.items() if k != "method"},
    )


def load_inputs(specs: list[str | os.PathLike]) -> list[EvalInput]:
    """Read every input; duplicate labels get ``#2``, ``#3`` … so tables stay unambiguous.

    Raises:
        EvalInputError: as `load_outputs`, or when no input is given.
    """
    if not specs:
        raise EvalInputError("no outputs files given")
    inputs = [load_outputs(s) for s in specs]
    seen: dict[str, int] = {}
    for inp in inputs:
        seen[inp.label] = seen.get(inp.label, 0) + 1
        if seen[inp.label] > 1:
            inp.label = f"{inp.label}#{seen[inp.label]}"
    return inputs
