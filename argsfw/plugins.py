"""Loading a decoding method or a stage of one's own by import path (``pkg.module:ATTR``).

Shared by the method registry (`argsfw.decoding.registry`) and the stage registry
(`argsfw.stages`): one import, one set of messages.
"""

from __future__ import annotations

import importlib


def import_object(spec: str, what: str, cls: type, error: type[Exception]):
    """The object ``ATTR`` of module ``pkg.module`` named by `spec`, checked to be a `cls`.

    `what` names it in messages (``decoding method``, ``stage``). Raises `error` with one line:
    the module cannot be imported, has no such attribute, or holds something else.
    """
    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise error(
            f"{what} {spec!r}: cannot import {module} ({exc}); check the name, or add its folder "
            "to PYTHONPATH"
        ) from None
    except AttributeError:
        raise error(f"{what} {spec!r}: {module} has no attribute {attr!r}") from None
    if not isinstance(obj, cls):
        raise error(
            f"{what} {spec!r} is a {type(obj).__name__}, not an {cls.__module__}.{cls.__qualname__}"
        )
    return obj
