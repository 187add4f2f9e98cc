"""Reward scores an evaluation already computed, kept in its run directory for the next one.

An evaluation re-run in the same run directory (a study that adds rows, a pipeline resumed after
a kill, the full study after the default one) would otherwise read every unchanged answer and
the instruments' held-out pairs through both reward models again: in the SmolLM2 study that was
most of a 22-minute evaluation. Here each model's scores are kept per token sequence, keyed by
what decides the score: the weights files (name, size, modification time), the dtype and the
device type, and the exact token ids the model reads. A model loaded from a hub id (no local
weights to identify) is not cached. Written by appending JSON lines, so a killed evaluation
keeps what it scored; a torn last line is ignored.

Why hand-written: `datasets`' fingerprint cache keys a whole `map` call, not a score per
sequence across calls with other sequences beside it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

CACHE_DIR = "score_cache"
_WEIGHTS = ("*.safetensors", "*.bin", "*.pt")


def model_identity(model, dtype: str) -> str | None:
    """A digest of `model`'s weights files, dtype and device type; None when they cannot be
    identified (no local directory)."""
    root = Path(getattr(model.config, "_name_or_path", "") or "")
    files = sorted(p for pattern in _WEIGHTS for p in root.glob(pattern)) if root.is_dir() else []
    if not files:
        return None
    device = next(model.parameters()).device.type
    h = hashlib.sha256(f"{dtype}|{device}|{type(model).__name__}".encode())
    for p in files:
        st = p.stat()
        h.update(f"|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def _key(ids: Sequence[int]) -> str:
    return hashlib.sha256(json.dumps(list(ids)).encode()).hexdigest()[:40]


class ScoreCache:
    """Scores of one model, by token sequence, in ``<run_dir>/score_cache/<identity>.jsonl``."""

    def __init__(self, path: Path):
        self.path = path
        self.scores: dict[str, float] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # the torn last line of a killed evaluation
                    continue
                self.scores[entry["k"]] = entry["s"]

    @classmethod
    def for_model(cls, run_dir, model, dtype: str) -> ScoreCache | None:
        identity = None if run_dir is None else model_identity(model, dtype)
        if identity is None:
            return None
        return cls(Path(run_dir) / CACHE_DIR / f"{identity}.jsonl")

    def get(self, ids: Sequence[int]) -> float | None:
        return self.scores.get(_key(ids))

    def add(self, pairs: list[tuple[Sequence[int], float]]) -> None:
        """Keep and append the scores of a batch."""
        if not pairs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            for ids, score in pairs:
                k = _key(ids)
                self.scores[k] = score
                f.write(json.dumps({"k": k, "s": score}) + "\n")
