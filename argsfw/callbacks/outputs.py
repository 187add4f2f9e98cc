"""The files a predict run writes, and how a resumed run reads them back (no Lightning here).

Layout of a predict run directory::

    outputs.jsonl               merged records, one per prompt, in prompt (dataset) order
    DONE                        written last: outputs.jsonl is complete for this prompt set
    skipped.jsonl               prompts left out (over the context limit), with the reason
    outputs_original.json       only with predict.legacy_json: [{prompt, response, method}]
    outputs.part-rank<R>.jsonl  while running: rank R's records, appended and flushed per batch
    config.yaml, meta.json      the RunDir contract; meta.json["output_settings"] fingerprints
                                the settings that decide the outputs

Resume design: a record is durable once its line (with its newline) is flushed to a part file.
A re-run reads the merged file and every part file, takes the ids found there as done (a torn
last line from a killed process is ignored, then cut off before that rank appends again), and
decodes only the rest. Merging keeps the first record per id, sorts by prompt order, replaces
outputs.jsonl atomically, deletes the parts and then writes DONE, so a crash at any point
leaves either the parts or the merged file (or both: duplicates are dropped at the next merge).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from argsfw.config.run_dir import atomic_file

log = logging.getLogger(__name__)

OUTPUTS = "outputs.jsonl"
DONE = "DONE"
SKIPPED = "skipped.jsonl"
LEGACY_JSON = "outputs_original.json"
PART_GLOB = "outputs.part-rank*.jsonl"
SETTINGS_KEY = "output_settings"


class OutputConflictError(ValueError):
    """The run directory holds outputs of different settings (a usage error: exit code 2)."""


def part_path(run_dir: Path, rank: int) -> Path:
    """The part file global rank `rank` appends to."""
    return Path(run_dir) / f"outputs.part-rank{rank}.jsonl"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; an unparseable line (a torn write) is skipped with a warning."""
    if not path.is_file():
        return []
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning(
                    "%s:%d: ignoring an incomplete record (interrupted write)", path, lineno
                )
    return out


def cut_torn_tail(path: Path) -> None:
    """Truncate `path` after its last newline, so appending never glues onto a torn record."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
        log.warning("%s: cut %d bytes of an interrupted write", path, len(data) - keep)


@dataclass
class OutputState:
    """What a run directory already holds: records and skips by id, and whether it is complete."""

    records: dict[str, dict] = field(default_factory=dict)  # id -> record (first seen)
    skipped: dict[str, dict] = field(default_factory=dict)  # id -> {id, skipped, ...}
    done: bool = False
    has_parts: bool = False

    @property
    def done_ids(self) -> set[str]:
        """Ids that need no decoding: written or deliberately skipped."""
        return set(self.records) | set(self.skipped)

    @property
    def any(self) -> bool:
        return bool(self.records or self.skipped or self.has_parts)


def read_state(run_dir: Path) -> OutputState:
    """Read the merged file, the skip list and every part file of `run_dir`."""
    run_dir = Path(run_dir)
    state = OutputState(done=(run_dir / DONE).is_file())
    parts = sorted(run_dir.glob(PART_GLOB))
    state.has_parts = bool(parts)
    for path in [run_dir / OUTPUTS, run_dir / SKIPPED, *parts]:
        for rec in read_jsonl(path):
            rid = str(rec.get("id"))
            target = state.skipped if rec.get("skipped") else state.records
            if rid not in state.records and rid not in state.skipped:
                target[rid] = rec
    return state


def clear_outputs(run_dir: Path) -> None:
    """Delete every output file of a predict run (``overwrite=true``), and its W&B run id.

    Why the id too: the run starts over, so it logs to a new W&B run, not the old one's history.
    """
    from argsfw.loggers import RUN_ID_FILE

    run_dir = Path(run_dir)
    for name in (DONE, OUTPUTS, SKIPPED, LEGACY_JSON, RUN_ID_FILE):
        (run_dir / name).unlink(missing_ok=True)
    for path in run_dir.glob(PART_GLOB):
        path.unlink()


def check_settings(run_dir: Path, recorded: dict | None, current: dict, state: OutputState) -> None:
    """Refuse to mix outputs of different settings in one run directory.

    Raises:
        OutputConflictError: one line naming the differing keys and how to continue.
    """
    if not state.any or (recorded is not None and _comparable(recorded, current) == current):
        return
    how = f"continue with run_dir=<another dir>, or start over in {run_dir} with overwrite=true"
    if recorded is None:
        raise OutputConflictError(
            f"{run_dir} holds predict outputs whose settings are unknown (no meta.json '{SETTINGS_KEY}'); {how}"
        )
    diffs = diff_settings(_comparable(recorded, current), current)
    raise OutputConflictError(
        f"{run_dir} holds outputs of different settings ({'; '.join(diffs[:4])}); {how}"
    )


# Data keys that choose which prompts a run decodes and what they are
# (in `argsfw.predict.output_settings`); runs fingerprinted before a key existed keep resuming.
SELECTION_KEYS = (
    "limit", "offset", "run_percent", "val_fraction", "prompt_format", "max_prompt_length",
)  # fmt: skip


def _comparable(recorded: dict, current: dict) -> dict:
    """`recorded` as it must equal `current` for the run to continue.

    ``data.limit`` may grow: the records so far are a prefix of the larger selection (decoding
    more prompts into a finished run); a smaller limit would put DONE over records outside its
    selection. A selection key missing from `recorded` (a run from before it was fingerprinted)
    is taken as unchanged. Of the decode settings only those `current` records count: a run
    recorded with every knob (before fingerprints kept only the method's own) keeps resuming,
    and so does one whose own method's knobs were recorded under ``options`` (before a method
    of one's own set its knobs as ``decode.<knob>`` like the built-ins).
    """
    if isinstance(recorded.get("decode"), dict) and isinstance(current.get("decode"), dict):
        now, old = current["decode"], dict(recorded["decode"])
        old.update(old.pop("options", None) or {})
        recorded = {**recorded, "decode": {k: v for k, v in old.items() if k in now}}
    data = dict(recorded.get("data") or {})
    new = current.get("data") or {}
    for key in SELECTION_KEYS:
        if key not in data and key in new:
            data[key] = new[key]
    old_limit, new_limit = data.get("limit"), new.get("limit")
    if old_limit is not None and (new_limit is None or new_limit >= old_limit):
        data["limit"] = new_limit
    return {**recorded, "data": data} if "data" in recorded else recorded


def diff_settings(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two nested dicts."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_settings(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


@dataclass
class MergeSummary:
    """Counts of a merge, JSON-ready for meta.json."""

    written: int = 0  # records in outputs.jsonl
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> prompts left out
    truncated: int = 0  # records whose prompt was left-truncated to fit
    duplicates_dropped: int = 0  # second copies of an id (a crash between rename and cleanup)

    def as_dict(self) -> dict:
        return asdict(self)


def _write_jsonl_atomic(path: Path, records: list[dict]) -> None:
    with atomic_file(path) as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _sorted(records: dict[str, dict], order: dict[str, int]) -> list[dict]:
    # Ids of the current prompt set in dataset order; any others (an earlier, larger selection)
    # after them, in their recorded order.
    big = len(order)
    keyed = [(order.get(rid, big + rec.get("index", 0)), rid, rec) for rid, rec in records.items()]
    return [rec for _, _, rec in sorted(keyed, key=lambda t: (t[0], t[1]))]


def merge_outputs(run_dir: Path, order: dict[str, int]) -> MergeSummary:
    """Merge part files into outputs.jsonl / skipped.jsonl in prompt order; delete the parts.

    `order` maps prompt id -> position in the dataset. Does not write DONE (see `mark_done`).
    """
    run_dir = Path(run_dir)
    parts = sorted(run_dir.glob(PART_GLOB))
    total = sum(len(read_jsonl(p)) for p in parts) + len(read_jsonl(run_dir / OUTPUTS))
    total += len(read_jsonl(run_dir / SKIPPED))
    state = read_state(run_dir)
    _write_jsonl_atomic(run_dir / OUTPUTS, _sorted(state.records, order))
    if state.skipped:
        _write_jsonl_atomic(run_dir / SKIPPED, _sorted(state.skipped, order))
    for p in parts:
        p.unlink()
    summary = MergeSummary(
        written=len(state.records),
        truncated=sum(1 for r in state.records.values() if r.get("prompt_truncated")),
        duplicates_dropped=total - len(state.records) - len(state.skipped),
    )
    for rec in state.skipped.values():
        summary.skipped[rec["skipped"]] = summary.skipped.get(rec["skipped"], 0) + 1
    return summary


def mark_done(run_dir: Path) -> None:
    """Write the DONE marker (last, after outputs.jsonl is complete)."""
    (Path(run_dir) / DONE).write_text("outputs.jsonl is complete\n")


def write_legacy_json(run_dir: Path, method: str) -> Path:
    """Write the original evaluation layout: a JSON list of ``{prompt, response, method}``."""
    records = read_jsonl(Path(run_dir) / OUTPUTS)
    rows = [{"prompt": r["prompt"], "response": r["response"], "method": method} for r in records]
    path = Path(run_dir) / LEGACY_JSON
    with atomic_file(path) as f:
        f.write(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
    return path
