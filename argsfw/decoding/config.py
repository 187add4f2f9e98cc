"""Decoding settings: the keys every method shares (`DecodeConfig`) and each method's own knobs.

A method declares its knobs as a dataclass in its own module (`argsfw.decoding.registry.Method`
``settings=``), each field made by `knob` with its default, one-line doc and valid range.
The settings a method decodes with are one object of ``DecodeConfig`` + that dataclass
(`settings_class`), built by `decode_settings` (Python) or `from_config` (a composed
``decode`` section, where a knob is set as ``decode.<knob>=value``, built-in or one's own).
No list of every method's knobs exists anywhere: a method's knobs are its dataclass.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from argsfw.decoding.types import DecodeInputError

# `DecodeConfig.scorer` values; see argsfw.decoding.probe
SCORER_CHOICES = ("auto", "tree", "expanded", "full")
DEFAULT_TEMPERATURE = 0.7  # the sampling methods' temperature when a method gives none
VOCAB = "vocab"  # a knob bound known only once the policy is read (its vocabulary size)


@dataclass
class DecodeConfig:
    """What every decoding method shares; a method's own knobs join these (`settings_class`)."""

    method: str = "args-greedy"  # a registered name (either - or _) or pkg.module:METHOD
    max_new_tokens: int = 128
    batch_size: int = 8
    seed: int = 0  # per-prompt generators are seeded from (seed, prompt key): shard-independent
    stop_at_eos: bool = True
    # reward scorer: auto (the fastest the RM's probe verified) | tree | expanded | full
    scorer: str = "auto"
    # keep a too-long prompt's last tokens (BOS kept) instead of failing
    truncate_prompt: bool = False
    # log every step's candidates, rewards and choice (logger "argsfw.decoding", DEBUG level)
    debug: bool = False
    # the original's settings file: one JSON object per line (rm_weight, topk, mode, sample_temp);
    # predict writes one output per line
    config_file: str | None = None

    def __reduce__(self):
        # a method's settings class is made at run time: rebuild it by name when unpickled
        return (_rebuild, (self.method, dataclasses.asdict(self)))

    def knobs(self) -> dict[str, Any]:
        """The method's own knobs of these settings, ``{name: value}`` (JSON-ready)."""
        shared = {f.name for f in dataclasses.fields(DecodeConfig)}
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in shared
        }


SHARED = tuple(f.name for f in dataclasses.fields(DecodeConfig))
DEFAULT_METHOD = DecodeConfig.method


def _rebuild(method: str, values: dict) -> DecodeConfig:
    values.pop("method", None)
    return decode_settings(method, **values)


@dataclass(frozen=True)
class KnobRange:
    """A knob's valid values: bounds (``VOCAB`` as ``le``: the policy's vocabulary), choices, and
    special values allowed besides (``None``, ``"auto"``)."""

    ge: float | None = None
    gt: float | None = None
    le: float | str | None = None
    lt: float | None = None
    choices: tuple = ()
    also: tuple = ()
    integer: bool = False

    def text(self, kind: str) -> str:
        """The range in words (``an integer >= 1``, ``a number in (0, 1]``, ``auto or null``)."""
        if self.choices:
            base = "one of " + ", ".join(map(str, self.choices))
        else:
            noun = "an integer" if self.integer or kind == "int" else "a number"
            noun = {"bool": "true or false", "str": "a string"}.get(kind, noun)
            lo = (self.ge, "[", ">=") if self.ge is not None else (self.gt, "(", ">")
            hi = (self.le, "]", "<=") if self.le is not None else (self.lt, ")", "<")
            hi_v = "vocabulary" if hi[0] == VOCAB else hi[0]
            if lo[0] is not None and hi[0] is not None:
                base = f"{noun} in {lo[1]}{lo[0]:g}, {hi_v if isinstance(hi_v, str) else f'{hi_v:g}'}{hi[1]}"
            elif lo[0] is not None:
                base = f"{noun} {lo[2]} {lo[0]:g}"
            elif hi[0] is not None:
                base = f"{noun} {hi[2]} {hi_v}"
            else:
                base = noun if kind in ("bool", "str") else f"any finite {noun.split()[-1]}"
        extra = ["null" if a is None else str(a) for a in self.also]
        return base + (f", or {' or '.join(extra)}" if extra else "")


def knob(default: Any = None, doc: str = "", *, factory=None, **rng) -> Any:
    """A field of a method's settings dataclass: its default, one-line doc and range.

    ``rng``: `KnobRange` fields (``ge``, ``gt``, ``le``, ``lt``, ``choices``, ``also``,
    ``integer``). Annotate the field ``int``, ``float``, ``bool``, ``str`` (``| None`` when
    ``None`` is allowed) or ``Any``. Returns a `dataclasses.field`.
    """
    meta = {"doc": doc, "range": KnobRange(**rng)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _kind(annotation) -> str:
    """``int`` | ``float`` | ``bool`` | ``str`` | ``any`` of a (resolved) field annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return {int: "int", float: "float", bool: "bool", str: "str"}.get(args[0], "any")


@dataclass(frozen=True)
class Knob:
    """One knob of a method, for checks and the listing."""

    name: str
    default: Any
    doc: str
    range: KnobRange
    kind: str

    def describe(self) -> str:
        """Its range in words."""
        return self.range.text(self.kind)

    def check(self, value: Any, vocab: int | None = None, prefix: str = "decode.") -> None:
        """Raise `DecodeInputError` (one line) unless `value` is in range."""
        r = self.range
        if any(value is a or (type(value) is type(a) and value == a) for a in r.also):
            return
        ok = True
        if r.choices:
            ok = value in r.choices
        elif self.kind == "bool":
            ok = isinstance(value, bool)
        elif self.kind == "str":
            ok = isinstance(value, str)
        elif self.kind in ("int", "float") or r.integer or _bounded(r):
            integer = r.integer or self.kind == "int"
            number = isinstance(value, int if integer else (int, float)) and not isinstance(
                value, bool
            )
            ok = number and math.isfinite(value)
            hi = vocab if r.le == VOCAB else r.le
            for bound, good in ((r.ge, lambda b: value >= b), (r.gt, lambda b: value > b),
                                (hi, lambda b: value <= b), (r.lt, lambda b: value < b)):  # fmt: skip
                if ok and isinstance(bound, (int, float)):
                    ok = good(bound)
        if not ok:
            text = self.describe()
            if vocab is not None and r.le == VOCAB:
                text = text.replace("vocabulary]", f"{vocab}] (the vocabulary size)")
            raise DecodeInputError(f"{prefix}{self.name} must be {text}, got {value!r}")


def _bounded(r: KnobRange) -> bool:
    return any(b is not None for b in (r.ge, r.gt, r.le, r.lt))


def knobs_of(settings: type | None) -> list[Knob]:
    """The knobs a settings dataclass declares, in field order (a field without `knob` metadata
    has an empty doc and no range)."""
    if settings is None:
        return []
    hints = typing.get_type_hints(settings)
    out = []
    for f in dataclasses.fields(settings):
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        meta = f.metadata or {}
        out.append(
            Knob(
                f.name,
                default,
                meta.get("doc", ""),
                meta.get("range", KnobRange()),
                _kind(hints[f.name]),
            )
        )
    return out


_CLASSES: dict[int, tuple[Any, type]] = {}


def settings_class(method) -> type:
    """``DecodeConfig`` + the method's own knobs as one dataclass (made once per method)."""
    have = _CLASSES.get(id(method))
    if have is not None and have[0] is method:
        return have[1]
    own = method.settings
    if own is None:
        cls = DecodeConfig
    else:
        hints = typing.get_type_hints(own)
        clash = sorted({f.name for f in dataclasses.fields(own)} & set(SHARED))
        if clash:
            raise ValueError(
                f"method {method.name!r}: knob {clash[0]!r} is a shared setting; rename it"
            )
        extra = []
        for f in dataclasses.fields(own):
            kw = {"metadata": f.metadata}
            if f.default_factory is not dataclasses.MISSING:
                kw["default_factory"] = f.default_factory
            else:
                kw["default"] = f.default
            extra.append((f.name, hints[f.name], field(**kw)))
        cls = dataclasses.make_dataclass("DecodeConfig", extra, bases=(DecodeConfig,))
        cls.__module__ = __name__
        cls.__doc__ = (
            f"Settings of {method.name}: the shared keys and its own knobs ({own.__qualname__})."
        )
    _CLASSES[id(method)] = (method, cls)
    return cls


def decode_settings(
    method: Any = None, base: DecodeConfig | None = None, *, lenient: bool = False, **values
) -> DecodeConfig:
    """The settings of `method` (a name, an import path or a `Method`): the shared keys and the
    knobs of `base` (those the method also has), then `values`.

    ``lenient`` drops values the method has no knob for (the original API passes every knob);
    otherwise one is an error. Raises `DecodeInputError` (one line, naming the method's knobs)
    or `UnknownMethodError`.
    """
    from argsfw.decoding.registry import get_method

    method = DEFAULT_METHOD if method is None else method
    found = get_method(method) if isinstance(method, str) else method
    name = method if isinstance(method, str) and ":" in method else found.name
    cls = settings_class(found)
    names = {f.name for f in dataclasses.fields(cls)}
    start = {
        k: v
        for k, v in (dataclasses.asdict(base).items() if base is not None else ())
        if k in names
    }
    unknown = sorted(set(values) - names)
    if unknown and not lenient:
        raise DecodeInputError(unknown_knob_message(found, unknown[0], ""))
    merged = {**start, **{k: v for k, v in values.items() if k in names}, "method": name}
    return cls(**merged)


def unknown_knob_message(method, key: str, prefix: str = "decode.") -> str:
    """One line: `key` is not a setting of `method`; its knobs (and the shared keys)."""
    own = [k.name for k in knobs_of(method.settings)]
    theirs = ", ".join(f"{prefix}{k}" for k in own) if own else "none"
    hint = ""
    near = difflib.get_close_matches(key, [*own, *SHARED], n=1, cutoff=0.6)
    if near:
        hint = f"; did you mean {prefix}{near[0]}?"
    elif key == "options":
        hint = "; a method's own knobs are set directly now, e.g. decode.eta=0.2, not decode.options.eta"
    else:
        from argsfw.decoding.registry import methods

        other = next(
            (m.name for m in methods().values() if key in {k.name for k in knobs_of(m.settings)}),
            None,
        )
        if other:
            hint = f" ({key} is a knob of {other}: choose a method with decode=NAME, which sets its own knobs)"
    return f"{prefix}{key} is not a setting of {method.name}; its knobs: {theirs}{hint}"


def from_config(raw: dict, prefix: str = "decode.") -> DecodeConfig:
    """A composed ``decode`` section (a dict) as the settings of its method, each value typed.

    Raises `DecodeInputError` naming an unknown method or key (with the method's valid knobs) or
    a value of the wrong type.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    name = str(raw.get("method") or DEFAULT_METHOD)
    found = _method_named(name, prefix)
    cls = settings_class(found)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise DecodeInputError(unknown_knob_message(found, unknown[0], prefix))
    try:
        typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), raw))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or "?"
        first = str(exc).splitlines()[0]
        raise DecodeInputError(f"{prefix}{key}: {first}") from None
    return typed


def _method_named(name: str, prefix: str):
    from argsfw.decoding.registry import get_method, methods

    try:
        return get_method(name)
    except DecodeInputError as exc:
        if not prefix or ":" in name:  # one's own method: the import error says what to fix
            raise type(exc)(f"{prefix}method: {exc}" if prefix else str(exc)) from None
        valid = [n for n in methods() if ":" not in n]
        near = difflib.get_close_matches(name.lower(), valid, n=1, cutoff=0.75)
        hint = f"did you mean {near[0]}? " if near else ""
        raise type(exc)(
            f"{prefix}method={name!r} is not a decoding method; {hint}choose one of "
            f"{', '.join(valid)} (or pkg.module:METHOD)"
        ) from None


def sampling_temperature(s: DecodeConfig) -> float | None:
    """The temperature `s` samples at: its ``temperature`` knob, else the method's own default
    (GenARM: ``1 / (1 + alpha)``), else `DEFAULT_TEMPERATURE`; None for a method without one."""
    if not hasattr(s, "temperature"):
        return None
    if s.temperature is not None:
        return float(s.temperature)
    from argsfw.decoding.registry import get_method

    try:
        method = get_method(s.method)
    except DecodeInputError:
        return DEFAULT_TEMPERATURE
    own = method.default_temperature(s) if method.default_temperature else None
    return DEFAULT_TEMPERATURE if own is None else float(own)


def check_decode_settings(s: DecodeConfig, vocab: int | None = None, prefix: str = ""):
    """Validate the settings of `s` that need no model, and bounds on the vocabulary if `vocab` is given.

    The shared keys, then each of the method's knobs against its declared range, then the
    method's own ``check``. `prefix` (``"decode."`` from the config) is put before each key in
    the messages. Returns the method (`argsfw.decoding.registry.Method`). Raises
    `DecodeInputError` with a one-line reason (an unknown knob names the method's valid ones).
    """
    method = _method_named(str(s.method), prefix)
    if type(s) is not settings_class(method):
        s = decode_settings(method, base=s)
    for key in ("max_new_tokens", "batch_size"):
        value = getattr(s, key)
        if not _int(value) or value < 1:
            raise DecodeInputError(f"{prefix}{key} must be a positive integer, got {value!r}")
    if s.scorer not in SCORER_CHOICES:
        raise DecodeInputError(
            f"{prefix}scorer must be one of {', '.join(SCORER_CHOICES)}, got {s.scorer!r}"
        )
    for k in knobs_of(method.settings):
        k.check(getattr(s, k.name), vocab, prefix)
    try:
        method.check(s)
    except DecodeInputError as exc:
        raise DecodeInputError(str(exc).replace("decode.", prefix, 1)) from None
    except ValueError as exc:  # a method of one's own may raise a plain ValueError
        raise DecodeInputError(f"{prefix}settings of {method.name}: {exc}") from None
    own = method.settings
    if own is not None:  # the dataclass's own __post_init__ checks, if it has any
        try:
            own(**s.knobs())
        except (TypeError, ValueError) as exc:
            raise DecodeInputError(f"{prefix}settings of {method.name}: {exc}") from None
    temperature = sampling_temperature(s)
    if method.samples and temperature is not None and not temperature > 0:
        hint = " (greedy methods need no temperature)" if prefix else ""
        raise DecodeInputError(
            f"{prefix}temperature must be > 0 for {method.name}, got {s.temperature!r}{hint}"
        )
    return method


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
