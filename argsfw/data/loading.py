"""The one entry point the rest of argsfw uses to get data: `load_pairs` and `load_prompts`.

Order of operations, the same for every source:

1. read the raw records of the split (for ``split == "validation"`` with ``val_fraction > 0``:
   of ``cfg.split``), parse them with the source's adapter (errors name file and line);
2. carve the validation set when ``val_fraction > 0``: a record goes to validation when a
   seeded hash of its *prompt text* falls below the fraction, so the carve is deterministic,
   keeps dataset order, and never puts one prompt on both sides;
3. drop (pairs) or de-duplicate (SHP prompts: one per ``post_id``) and count why;
4. select: first ``run_percent`` % (as the original's ``run_percent``), then ``offset``,
   then ``limit``;
5. with ``prompt_format=chat``, render the prompts with the tokenizer's chat template
   (`argsfw.data.chat`).
"""

from __future__ import annotations

import hashlib
import logging
import math

from argsfw.data.adapters import (
    ADAPTERS,
    EXPECTED_FIELDS,
    PAIR_FIELDS,
    PROMPT_PROBLEMS,
    BadField,
    Ctx,
    MissingField,
    Parsed,
)
from argsfw.data.chat import PROMPT_FORMATS, render_pairs, render_prompts
from argsfw.data.config import DataConfig
from argsfw.data.reading import read_split, resolve_files
from argsfw.data.types import DataError, DataStats, PreferencePair, PromptRecord

log = logging.getLogger(__name__)

VALIDATION = "validation"
SOURCES = ("tiny", *ADAPTERS)


def check_data_config(cfg: DataConfig) -> None:
    """Check the values of `cfg` that need no file: source, fractions, counts, lengths, splits.

    Raises `DataError` naming the key and its valid values (run at composition time).
    """
    if cfg.source not in SOURCES:
        raise DataError(f"unknown data.source {cfg.source!r}; choose one of {', '.join(SOURCES)}")
    if cfg.prompt_format not in PROMPT_FORMATS:
        raise DataError(
            f"unknown data.prompt_format {cfg.prompt_format!r}; choose one of {', '.join(PROMPT_FORMATS)}"
        )
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise DataError(f"data.val_fraction must be in [0, 1), got {cfg.val_fraction}")
    if cfg.shard is not None and not (
        len(cfg.shard) == 2 and 0.0 <= cfg.shard[0] < cfg.shard[1] <= 1.0
    ):
        raise DataError(
            f"data.shard must be [lo, hi] with 0 <= lo < hi <= 1, got {list(cfg.shard)}"
        )
    if cfg.val_shard is not None and not (
        cfg.val_fraction > 0
        and len(cfg.val_shard) == 2
        and cfg.val_fraction <= cfg.val_shard[0] < cfg.val_shard[1] <= 1.0
    ):
        raise DataError(
            f"data.val_shard must be [lo, hi] with data.val_fraction <= lo < hi <= 1 and "
            f"data.val_fraction > 0 (it is carved out of the training pairs, never out of the "
            f"held-out ones), got {cfg.val_shard} with val_fraction={cfg.val_fraction}"
        )
    if cfg.run_percent is not None and not 0.0 < cfg.run_percent <= 100.0:
        raise DataError(f"data.run_percent must be in (0, 100], got {cfg.run_percent}")
    if cfg.offset < 0 or (cfg.limit is not None and cfg.limit < 0):
        raise DataError(
            f"data.offset and data.limit must be >= 0, got {cfg.offset} and {cfg.limit}"
        )
    unknown = set(cfg.fields) - set(PAIR_FIELDS)
    if unknown:
        raise DataError(
            f"data.fields has unknown keys {sorted(unknown)}; allowed: {', '.join(PAIR_FIELDS)}"
        )
    for key in ("max_length", "max_prompt_length"):
        if getattr(cfg, key) < 1:
            raise DataError(f"data.{key} must be an integer >= 1, got {getattr(cfg, key)}")
    if cfg.num_workers < 0:
        raise DataError(f"data.num_workers must be >= 0, got {cfg.num_workers}")
    if cfg.source == "tiny":
        from argsfw.data.tiny import TINY_SIZES, tiny_split_name

        for key in ("split", "eval_split"):
            if tiny_split_name(getattr(cfg, key)) not in TINY_SIZES:
                raise DataError(
                    f"data.{key}={getattr(cfg, key)!r}: the tiny corpus has splits "
                    f"{', '.join(TINY_SIZES)}; set data.{key} to one of them"
                )
    elif not cfg.path:
        raise DataError(
            f"data.source={cfg.source} needs data.path: set it to a local file, directory or glob, "
            "or a hub dataset id"
        )


def check_data_files(cfg: DataConfig, splits: list[str]) -> None:
    """Fail at start-up, before any model loads, when a local data path has no files for a split.

    Reads no record (bad records are reported, with file and line, when they are read).
    Raises `DataError` naming the path and the split.
    """
    if cfg.source == "tiny":
        return
    for split in dict.fromkeys(splits):
        carve = cfg.val_fraction > 0 and split in (VALIDATION, cfg.split)
        resolve_files(cfg.path, cfg.split if carve else split)


def _unit_hash(prompt: str, seed: int) -> float:
    """A seeded hash of a prompt's text in [0, 1): the carve and the shards read it."""
    digest = hashlib.sha1(f"{seed}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _parse_source(cfg: DataConfig, split: str, responses: bool) -> list[Parsed]:
    """Parse every record of `split`; a missing or bad field raises a located `DataError`."""
    if cfg.source == "tiny":
        from argsfw.data.tiny import tiny_pairs

        return [
            Parsed(p.prompt, p.chosen, p.rejected, p.id, p.id) for p in tiny_pairs(split, cfg.seed)
        ]
    raw = read_split(cfg.path, split, cfg.source)
    ctx = Ctx(
        id_prefix=f"{cfg.source}-{split}",
        fields={f: cfg.fields.get(f, f) for f in PAIR_FIELDS},
        responses=responses,
    )
    adapter = ADAPTERS[cfg.source]
    out: list[Parsed] = []
    for i, rec in enumerate(raw.records):
        try:
            out.append(adapter(rec, i, ctx))
        except MissingField as exc:
            raise DataError(
                f"{raw.where(i)}: missing field {exc.args[0]!r} (source {cfg.source!r} expects {EXPECTED_FIELDS[cfg.source]})"
            ) from None
        except BadField as exc:
            raise DataError(f"{raw.where(i)}: {exc}") from None
    for p, domain in zip(out, raw.domains()):
        p.domain = domain
    if cfg.source == "shp":  # several pairs per post: number them so pair ids stay unique
        seen: dict[str, int] = {}
        for p in out:
            k = seen[p.prompt_id] = seen.get(p.prompt_id, -1) + 1
            p.id = f"{p.prompt_id}-{k}"
    return out


def _records(cfg: DataConfig, split: str | None, responses: bool) -> tuple[list[Parsed], DataStats]:
    """Parsed records of the requested split, after the validation carve."""
    check_data_config(cfg)
    split = split or cfg.split
    carve = cfg.val_fraction > 0 and split in (VALIDATION, cfg.split)
    parsed = _parse_source(cfg, cfg.split if carve else split, responses)
    if carve:
        held_out = (0.0, cfg.val_fraction)
        dev = tuple(cfg.val_shard) if cfg.val_shard else None
        inside = lambda h, r: r is not None and r[0] <= h < r[1]  # noqa: E731
        if split == VALIDATION:
            want = lambda h: inside(h, dev or held_out)  # noqa: E731
        else:
            want = lambda h: not inside(h, held_out) and not inside(h, dev)  # noqa: E731
        parsed = [p for p in parsed if want(_unit_hash(p.prompt, cfg.seed))]
    if cfg.shard is not None and split != VALIDATION:  # disjoint training sets, e.g. two RMs
        lo, hi = cfg.shard
        parsed = [p for p in parsed if lo <= _unit_hash(p.prompt, cfg.seed) < hi]
    return parsed, DataStats(source=cfg.source, split=split, read=len(parsed))


def _select(items: list, cfg: DataConfig, stats: DataStats) -> list:
    n = len(items)
    if cfg.run_percent is not None:
        items = items[: math.ceil(n * cfg.run_percent / 100.0)]
    items = items[cfg.offset :]
    if cfg.limit is not None:
        items = items[: cfg.limit]
    stats.selected_out = n - len(items)
    stats.kept = len(items)
    return items


def _check_unique(ids: list[str], cfg: DataConfig) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise DataError(
                f"data source {cfg.path or cfg.source!r}: id {i!r} appears more than once; ids must be unique"
            )
        seen.add(i)


def load_pairs_with_stats(
    cfg: DataConfig, split: str | None = None, tokenizer=None
) -> tuple[list[PreferencePair], DataStats]:
    """Like `load_pairs`, also returning the `DataStats` of the load."""
    parsed, stats = _records(cfg, split, responses=True)
    pairs: list[PreferencePair] = []
    for p in parsed:
        if p.problem is not None:
            stats.drop(p.problem)
            continue
        for f in p.flags:
            stats.flag(f)
        pairs.append(
            PreferencePair(
                prompt=p.prompt,
                chosen=p.chosen or "",
                rejected=p.rejected or "",
                id=p.id,
                domain=p.domain,
                messages=p.messages,
            )
        )
    _check_unique([p.id for p in pairs], cfg)
    pairs = _select(pairs, cfg, stats)
    if cfg.prompt_format == "chat":
        pairs = render_pairs(tokenizer, pairs)
    log.info("loaded pairs %s", stats)
    return pairs, stats


def load_pairs(cfg: DataConfig, split: str | None = None, tokenizer=None) -> list[PreferencePair]:
    """Preference pairs of `split` (default ``cfg.split``) in dataset order.

    ``split="validation"`` with ``cfg.val_fraction > 0`` gives the part carved out of
    ``cfg.split`` (which then loses it). Records the adapters cannot use as a preference
    comparison are dropped and counted (see `load_pairs_with_stats`).
    Raises `DataError` (one line) for a missing path, an unreadable file, a missing field
    (file and line named), duplicate ids or an invalid selection. ``tokenizer`` renders the
    prompts when ``cfg.prompt_format == "chat"`` (then required).
    """
    return load_pairs_with_stats(cfg, split, tokenizer)[0]


def load_prompts_with_stats(
    cfg: DataConfig, split: str | None = None, tokenizer=None
) -> tuple[list[PromptRecord], DataStats]:
    """Like `load_prompts`, also returning the `DataStats` of the load."""
    parsed, stats = _records(cfg, split or cfg.eval_split, responses=False)
    prompts: list[PromptRecord] = []
    seen: set[str] = set()
    for p in parsed:
        if p.problem in PROMPT_PROBLEMS:
            stats.drop(p.problem)
        elif p.prompt_id in seen:
            stats.drop("duplicate_prompt_id")
        else:
            seen.add(p.prompt_id)
            prompts.append(PromptRecord(id=p.prompt_id, prompt=p.prompt, messages=p.messages))
    prompts = _select(prompts, cfg, stats)
    if cfg.prompt_format == "chat":
        prompts = render_prompts(tokenizer, prompts)
    log.info("loaded prompts %s", stats)
    return prompts, stats


def load_prompts(cfg: DataConfig, split: str | None = None, tokenizer=None) -> list[PromptRecord]:
    """Prompts of `split` (default ``cfg.eval_split``) in dataset order, for decoding and PPO.

    One prompt per record, except SHP: one per ``post_id`` (first occurrence), as the
    original. Records whose prompt is ill-defined (chosen/rejected contexts differ, no
    assistant turn) are dropped and counted. Raises `DataError` like `load_pairs`.
    """
    return load_prompts_with_stats(cfg, split, tokenizer)[0]
