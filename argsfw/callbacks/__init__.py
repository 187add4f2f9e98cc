"""Predict callbacks and the output files they write.

`argsfw.callbacks.outputs` (file layout, resume state, merging) is plain Python; the Lightning
callbacks in `argsfw.callbacks.writer` are imported lazily, since Lightning costs seconds to
import and a finished run's re-run should stay a quick no-op.
"""

from argsfw.callbacks.outputs import (
    DONE,
    LEGACY_JSON,
    OUTPUTS,
    SKIPPED,
    OutputConflictError,
    OutputState,
    merge_outputs,
    read_state,
)

_LAZY = {"PartFileWriter", "DecodeProgressBar", "ThroughputLogger", "log_samples_table"}


def __getattr__(name: str):
    if name in _LAZY:
        from argsfw.callbacks import writer

        return getattr(writer, name)
    raise AttributeError(f"module 'argsfw.callbacks' has no attribute {name!r}")


__all__ = [
    "DONE",
    "LEGACY_JSON",
    "OUTPUTS",
    "SKIPPED",
    "DecodeProgressBar",
    "OutputConflictError",
    "OutputState",
    "PartFileWriter",
    "ThroughputLogger",
    "log_samples_table",
    "merge_outputs",
    "read_state",
]
