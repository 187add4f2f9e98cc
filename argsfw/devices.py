"""``trainer.devices``: every accepted form, parsed once, for the schema, fit and predict.

Accepted: an int >= 1 (devices per node), -1 or ``"auto"`` (all), a non-empty list of distinct
device ids (``[0, 1]``), or any of those as a string (``"2"``, ``"-1"``, ``"0,1"``, ``"3,"`` for
id 3), with Lightning's meaning. No torch import at module level: the schema calls
`parse_devices` at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from argsfw.errors import ConfigError

_DIGITS = re.compile(r"[0-9]+")
DevicesSpec = int | str | list[int]  # a canonical form: int >= 1, -1, "auto", or a list of ids

_VALID = (
    "an integer >= 1 (devices per node), -1 or auto (all), or a list of distinct device ids "
    '([0, 1] or "0,1")'
)


def _bad(value: Any) -> ConfigError:
    return ConfigError(f"trainer.devices={value!r} is out of range: it must be {_VALID}")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_devices(value: Any) -> DevicesSpec:
    """The canonical form of a ``trainer.devices`` value; `ConfigError` (one line) for any other.

    Strings read as Lightning reads them: ``"-1"`` is -1, one with a comma a list of ids
    (``"3,"`` is ``[3]``), any other a count (``"2"`` is 2).
    """
    if isinstance(value, str):
        text = value.strip()
        if text in ("auto", "-1"):
            return "auto" if text == "auto" else -1
        if "," in text:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            if not parts or not all(_DIGITS.fullmatch(p) for p in parts):
                raise _bad(value)
            ids: Any = [int(p) for p in parts]
        elif _DIGITS.fullmatch(text):
            ids = int(text)
        else:
            raise _bad(value)
    else:
        ids = list(value) if isinstance(value, Sequence) else value
    if _int(ids) and (ids >= 1 or ids == -1):
        return ids
    ids_ok = isinstance(ids, list) and ids and all(_int(i) and i >= 0 for i in ids)
    if ids_ok and len(set(ids)) == len(ids):
        return ids
    raise _bad(value)


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def on_cpu(accelerator: str) -> bool:
    """True when `accelerator` runs on CPU processes (``cpu``, or ``auto`` without CUDA)."""
    return accelerator == "cpu" or (accelerator == "auto" and not _cuda_count())


def resolve_devices(value: Any, accelerator: str) -> tuple[DevicesSpec, int]:
    """``(devices for lightning.Trainer, device count per node)`` for `value` on `accelerator`.

    On CPU Lightning takes only a process count, so a list of ids becomes its length and -1 /
    ``"auto"`` become 1 (as Lightning's own ``"auto"`` on CPU). Elsewhere the canonical form is
    passed on, and -1 / ``"auto"`` count the visible CUDA devices.
    """
    devices = parse_devices(value)
    if isinstance(devices, list):
        count = len(devices)
    elif devices in ("auto", -1):
        count = 1 if on_cpu(accelerator) else max(_cuda_count(), 1)
    else:
        count = devices
    return (count if on_cpu(accelerator) else devices), count


def trainer_devices(trainer_cfg) -> tuple[DevicesSpec, int]:
    """`resolve_devices` for a `TrainerConfig`: its devices and accelerator."""
    return resolve_devices(trainer_cfg.devices, trainer_cfg.accelerator)
