"""Range checks shared by the config dataclasses' ``__post_init__`` (each raises `ConfigError`
naming ``key=value`` and what it must be)."""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any

from argsfw.errors import ConfigError


def _choice(name: str, value: Any, options: tuple) -> None:
    if value not in options:
        raise ConfigError(
            f"{name}={value!r} is not valid; choose one of {', '.join(map(str, options))}"
        )


def _check(name: str, value: Any, ok: bool, valid: str) -> None:
    """Raise `ConfigError` naming ``name=value`` and the valid range unless `ok`."""
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range: it must be {valid}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_finite(node: Any, prefix: str = "") -> None:
    """Refuse NaN or ±inf in any float setting of a config tree: dataclasses, dicts and lists.

    Why one generic rule: an infinite value passes every ``> 0`` range check (``decode.temperature=inf``
    samples uniform noise and the run still ends DONE), and a per-key check misses the next key.
    Raises `ConfigError` naming the dotted key and the value.
    """
    dot = f"{prefix}." if prefix else ""
    if is_dataclass(node):
        items = [(dot + f.name, getattr(node, f.name)) for f in fields(node)]
    elif isinstance(node, dict):
        items = [(f"{dot}{k}", v) for k, v in node.items()]
    elif isinstance(node, (list, tuple)):
        items = [(f"{prefix}[{i}]", v) for i, v in enumerate(node)]
    else:
        return
    for key, value in items:
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}; set a finite value")
        check_finite(value, key)


def _positive(name: str, value: Any) -> None:
    _check(name, value, _number(value) and value > 0, "a finite number > 0")


def _non_negative(name: str, value: Any) -> None:
    _check(name, value, _number(value) and value >= 0, "a finite number >= 0")


def _at_least(name: str, value: Any, low: int) -> None:
    _check(name, value, isinstance(value, int) and value >= low, f"an integer >= {low}")


def _fraction(name: str, value: Any, closed_low: bool = True) -> None:
    ok = _number(value) and (0 <= value <= 1 if closed_low else 0 < value <= 1)
    _check(name, value, ok, "in [0, 1]" if closed_low else "in (0, 1]")


def _batches(name: str, value: Any) -> None:
    """A Lightning ``limit_*``/``val_check_interval`` value: None, an int >= 1 or a fraction in (0, 1]."""
    if value is None:
        return
    ok = (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value <= 1)
    _check(name, value, ok, "an integer >= 1 (batches) or a fraction in (0, 1]")
