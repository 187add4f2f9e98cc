"""Reading raw records from local JSON/JSONL/Parquet files or a hub dataset, with located errors.

Local sources go through ``datasets.load_dataset("json" | "parquet", data_files=...)`` one file
at a time:
``datasets`` concatenates files without remembering which row came from which file, and a
``DataError`` must name the file and line of a bad record, so the per-file boundaries are kept
here. Hub ids go through ``datasets.load_dataset(id, split=...)`` unchanged.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argsfw.data.types import DataError

JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
PARQUET_SUFFIXES = (".parquet",)
DATA_SUFFIXES = JSON_SUFFIXES + PARQUET_SUFFIXES
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_GLOB_CHARS = set("*?[")
EXPECTED = (
    "a .json/.jsonl/.jsonl.gz/.parquet file, a directory of them, a glob, or a hub dataset id "
    "'org/name'"
)


def one_line(msg: object) -> str:
    """Collapse a message to a single line (the CLI prints ``str(exc)`` and exits 2)."""
    return " ".join(str(msg).split())


@dataclass
class RawSplit:
    """The raw records of one split and where each came from.

    ``files`` lists ``(path, n_records)`` in read order (empty for hub datasets), so record
    ``i`` can be traced back to its file and line by `where`.
    """

    records: list[dict[str, Any]]
    origin: str
    files: list[tuple[str, int]] = field(default_factory=list)

    def domains(self) -> list[str]:
        """Each record's domain: the name of its file's folder when the files lie in several
        folders (HH-RLHF's harmless-base / helpful-base), else its file's name when there are
        several files, else "" (one source, one domain)."""
        paths = [Path(f) for f, _ in self.files]
        if len({p.parent for p in paths}) > 1:
            names = [p.parent.name for p in paths]
        elif len(paths) > 1:
            names = [p.name.split(".")[0] for p in paths]
        else:
            return [""] * len(self.records)
        return [name for name, (_, n) in zip(names, self.files) for _ in range(n)]

    def where(self, i: int) -> str:
        """``"<file>: line N"`` (JSONL) / ``"<file>: record N"`` (JSON array) / ``"<hub id>: record N"``."""
        for path, n in self.files:
            if i < n:
                if _is_jsonl(path):
                    return f"{path}: line {_line_of_record(path, i)}"
                return f"{path}: record {i + 1}"
            i -= n
        return f"{self.origin}: record {i + 1}"


def _is_jsonl(path: str) -> bool:
    return path.endswith((".jsonl", ".jsonl.gz"))


def _open_text(path: str):
    return (
        gzip.open(path, "rt", encoding="utf-8")
        if path.endswith(".gz")
        else open(path, encoding="utf-8")
    )


def _line_of_record(path: str, index: int) -> int:
    """1-based line number of the `index`-th non-blank line (blank lines hold no record)."""
    seen = -1
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                seen += 1
                if seen == index:
                    return lineno
    return index + 1


def _first_bad_line(path: str) -> tuple[int, str] | None:
    """The first line of a JSONL file that is not a JSON object, as ``(lineno, reason)``.

    Hand-written because ``datasets`` reports a bad line as an arrow error with no line number.
    """
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                return lineno, f"invalid JSON ({exc.msg} at column {exc.colno})"
            if not isinstance(obj, dict):
                return lineno, f"expected a JSON object, got {type(obj).__name__}"
    return None


def _load_json_file(path: str):
    import datasets

    builder = "parquet" if path.endswith(PARQUET_SUFFIXES) else "json"
    try:
        return datasets.load_dataset(builder, data_files=path, split="train")
    except Exception as exc:  # datasets wraps arrow errors in several types; locate them here
        bad = _first_bad_line(path) if _is_jsonl(path) else None
        if bad is not None:
            raise DataError(f"{path}: line {bad[0]}: {bad[1]}") from exc
        cause = exc.__cause__ or exc
        raise DataError(
            one_line(f"{path}: could not be read as {builder} records: {cause}")
        ) from exc


def _split_files(directory: Path, split: str) -> list[str]:
    """Files of `split` in a directory, with the split inferred from file names by ``datasets``."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        patterns = get_data_patterns(str(directory))
    except Exception as exc:  # EmptyDatasetError: no data files at all
        raise DataError(
            f"data directory {directory} holds no data files (expected {EXPECTED})"
        ) from exc
    files = DataFilesDict.from_patterns(patterns, base_path=str(directory))
    if split not in files:
        raise DataError(
            f"data directory {directory} has splits {sorted(str(s) for s in files)} but not {split!r}: "
            f"set data.split/eval_split to one of them (data.val_fraction carves a validation set)"
        )
    found = [str(f) for f in files[split] if str(f).endswith(DATA_SUFFIXES)]
    if not found:
        raise DataError(
            f"data directory {directory}: split {split!r} has no .json/.jsonl(.gz)/.parquet files"
        )
    return found


def resolve_files(path: str, split: str) -> list[str] | None:
    """The local files `path` names for `split`, or None when `path` is a hub dataset id.

    ``{split}`` in `path` is replaced by the split name; a directory's split is inferred from
    file names; a single file or a glob is the same data for any split name.
    Raises `DataError` naming the path and what was expected when nothing local matches.
    """
    spec = path.replace("{split}", split)
    p = Path(spec).expanduser()
    if p.is_dir():
        return _split_files(p, split)
    if p.is_file():
        return [str(p)]
    if _GLOB_CHARS & set(spec):
        from datasets.data_files import resolve_pattern

        try:
            return sorted(resolve_pattern(str(p), base_path="."))
        except FileNotFoundError:
            raise DataError(
                f"data path {spec!r}: no files match this glob (expected {EXPECTED})"
            ) from None
    looks_local = (
        spec.endswith(DATA_SUFFIXES) or spec.startswith((".", "/", "~")) or not _HUB_ID.match(spec)
    )
    if looks_local or Path(spec.split("/", 1)[0]).is_dir():
        raise DataError(f"data path {spec!r} does not exist; set data.path to {EXPECTED}")
    return None


def read_split(path: str | None, split: str, source: str) -> RawSplit:
    """Read every raw record of `split` from `path` (see `resolve_files`).

    Raises `DataError` for a missing path, an unreadable file (file and line named), or a hub
    dataset that cannot be loaded.
    """
    if not path:
        raise DataError(f"data source {source!r} needs data.path ({EXPECTED})")
    files = resolve_files(path, split)
    if files is None:
        return _read_hub(path, split)
    records: list[dict[str, Any]] = []
    counts: list[tuple[str, int]] = []
    for f in files:
        rows = _load_json_file(f).to_list()
        records.extend(rows)
        counts.append((f, len(rows)))
    return RawSplit(records=records, origin=path, files=counts)


def _read_hub(dataset_id: str, split: str) -> RawSplit:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # offline, unknown id, unknown split: all surface as one clear line
        raise DataError(
            one_line(f"could not load hub dataset {dataset_id!r} split {split!r}: {exc}")
        ) from exc
    return RawSplit(records=ds.to_list(), origin=dataset_id)
