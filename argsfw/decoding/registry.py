"""The decoding-method registry: every method is declared once, by a `Method`, in its own module.

A `Method` says what a decoding method is called, its own knobs (a settings dataclass whose
fields carry their range and doc, see `argsfw.decoding.config.knob`), what guide model it
needs, how it decodes (a per-step `Chooser` inside the shared search loop
`argsfw.decoding.search.decode_batch`, or a whole-sequence ``run`` such as best-of-N), and how
its rows are labelled and drawn. The engine, predict, the original API, the config groups,
evaluate's labels and the plots look methods up here; none of them names a method.

Built-in methods are the `Method` objects of the modules in `argsfw.decoding.methods`, found
by scanning that package: a new built-in method is one new module there (its ``configs/decode``
YAML is optional). A method of one's own is named by import path,
``decode.method=my_pkg.my_module:MY_METHOD`` (a `Method` object): why an import path rather
than an entry point — it needs no packaging or reinstall, it works from a notebook or a script
directory on ``PYTHONPATH``, and the recipe names exactly the code that ran. Both set their
knobs the same way, ``decode.<knob>=value``. `python -m argsfw.methods` lists them all.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from argsfw.decoding.types import RewardKind, UnknownMethodError

if TYPE_CHECKING:
    import torch

    from argsfw.decoding.search import RowResult, StepContext

# What a method's guide model is: nothing, or a `RewardKind` (a scalar sequence RM; a token-level
# causal LM of kind "arm" (GenARM) or "token" (a reward head over the vocabulary); a prefix value
# model V(x, y_<=t), a sequence classifier read at every prefix).
NOTHING = "nothing"
NEEDS = (NOTHING, *(k.value for k in RewardKind))


class Scorer(Protocol):
    """Rewards of candidate next tokens for the live rows of a batch, its caches kept across steps.

    The shared loop (`argsfw.decoding.search.decode_batch`) calls ``start(ids [B, T], mask [B, T],
    prompts)`` once with the left-padded prompts; the chooser calls ``score(cands [B, k],
    chunk_size=None) -> rewards [B, k]`` (``r([x, y, v])`` for every candidate ``v`` of each
    row, float32 on the policy's device; ``chunk_size`` bounds candidates per RM forward); the
    loop then calls ``keep(rows [B'])`` when rows finish (indices into the current batch) and
    ``commit(chosen [B'])`` with each live row's chosen token. Scorers add what they read to
    the decode stats, and tell the batch's ledger every position they compute through the
    `RowCursors` a method's build gives them (``p.meter.cursors("rm", p.rows)``): a record's
    RM tokens, re-reads and FLOPs are what the ledger was told.
    """

    def start(self, ids: torch.Tensor, mask: torch.Tensor, prompts: list[list[int]]) -> None: ...

    def score(self, cands: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor: ...

    def commit(self, chosen: torch.Tensor) -> None: ...

    def keep(self, rows: torch.Tensor) -> None: ...


class Chooser(Protocol):
    """One decoding step: ``(logits [B, V], scorer or None, ctx) -> (tokens [B], rewards [B] or None)``.

    ``logits`` are the policy's next-token logits of the live rows (float32); ``ctx``
    (`argsfw.decoding.search.StepContext`) holds the step (1-based), each live row's prompt
    index (``ctx.rows``), prompt ids (``ctx.prompts``), tokens generated so far
    (``ctx.generated``, before this step's) and seeded ``torch.Generator`` (sample with it, so a
    prompt's output does not depend on its batch). ``tokens`` are the chosen ids (long, same
    device); ``rewards`` the guide's value of each chosen token, NaN for a row the step did not
    score, or None when no row was scored. Every returned token is committed: the loop appends
    it, then stops a row after it chooses an EOS id (kept) or at ``max_new_tokens``.

    Lifetime: ``build`` makes one chooser per batch, called once per step. Row ``j`` of a step
    is the ``j``-th live row: rows that finished are dropped, so ``j`` changes between steps;
    ``ctx.rows[j]`` (the prompt's index in the call) does not, so key any per-row state by it,
    or better read ``ctx.generated[j]``.
    """

    def __call__(
        self, logits: torch.Tensor, scorer: Scorer | None, ctx: StepContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@dataclass
class Parts:
    """What a method's ``build``/``run`` gets from the engine for one batch.

    ``decoder`` is the `ArgsDecoder` (its ``rm``, ``tokenizer``, ``scorer_spec``, ``probe`` ...),
    ``s`` the validated settings (temperature resolved), ``policy`` the batch's `PolicyState`,
    ``prompts`` the batch's prompt ids, ``rows`` their indices in the call, ``keys`` the seeding
    keys of the whole call, ``eos`` the stop ids (empty without ``stop_at_eos``), ``meter`` the
    call's meter (``meter.stats`` its `DecodeStats`).
    """

    decoder: Any
    s: Any
    policy: Any
    prompts: list[list[int]]
    rows: list[int]
    keys: list
    eos: list[int]
    meter: Any

    @property
    def stats(self):
        return self.meter.stats


def _no_check(s) -> None:
    return None


@dataclass(frozen=True)
class Method:
    """One decoding method. Exactly one of ``build`` and ``run`` is set.

    Args:
        name: the ``decode.method`` value (lower case, ``-`` separated; ``_`` also accepted).
        summary: one line for the listing.
        settings: a dataclass of the method's own knobs, each field made with
            `argsfw.decoding.config.knob` (default, doc, range); None when it has none. They are
            set as ``decode.<knob>=value``, checked against their ranges, listed, recorded in
            every output and fingerprinted. The engine hands the method one settings object:
            the shared keys (`DecodeConfig`) and these (``parts.s.weight``).
        needs: its guide model: ``"nothing"`` or a `RewardKind` (``"sequence"``, ``"arm"``,
            ``"token"``, ``"value"``).
        guide_knob: the knob that switches the guide off at 0 (``weight``, ``alpha``), or None
            when the guide is always read (best-of-N) or never.
        build: per-step methods: ``build(parts) -> (scorer or None, chooser)`` for the shared loop.
        run: whole-sequence methods: ``run(parts) -> list[RowResult]`` (one per prompt).
        samples: the method samples, so its temperature must be > 0.
        default_temperature: its temperature when its ``temperature`` knob is None, from the
            settings (None: the engine's default, 0.7).
        check: checks across knobs beyond each knob's own range (raise `DecodeInputError`
            with one line).
        check_models: ``check_models(decoder, settings)``: checks that need the loaded models
            (the engine runs it when the guide is used).
        label: ``label(settings) -> str``, the row's name in outputs, tables and plots;
            default: the name plus its ``label_knobs`` (``args-greedy w=1.5 k=10``).
        label_knobs: ``(knob, short name)`` pairs the default label shows.
        color, marker: its style in the plots; ``curve``: its rows are drawn as a curve over
            ``curve`` (the knob swept), else as single points.
        original_names: spellings of the original ARGS API's ``method=`` that mean this method.
        counts_scored_steps: outputs record how many steps the guide scored.
    """

    name: str
    summary: str
    settings: type | None = None
    needs: str = NOTHING
    guide_knob: str | None = None
    build: Callable[[Parts], tuple[Scorer | None, Chooser]] | None = None
    run: Callable[[Parts], list[RowResult]] | None = None
    samples: bool = False
    default_temperature: Callable[[Any], float | None] | None = None
    check: Callable[[Any], None] = _no_check
    check_models: Callable[[Any, Any], None] | None = None
    label: Callable[[Any], str] | None = None
    label_knobs: tuple[tuple[str, str], ...] = ()
    color: str = "#7f7f7f"
    marker: str = "o"
    curve: str | None = None
    original_names: tuple[str, ...] = ()
    counts_scored_steps: bool = False

    def __post_init__(self) -> None:
        if (self.build is None) == (self.run is None):
            raise ValueError(f"method {self.name!r}: give exactly one of build= and run=")
        if self.needs not in NEEDS:
            raise ValueError(f"method {self.name!r}: needs={self.needs!r}; choose one of {NEEDS}")
        if self.needs != NOTHING:
            object.__setattr__(self, "needs", RewardKind(self.needs))
        if not re.fullmatch(r"[a-z0-9][a-z0-9.:_-]*", self.name):
            raise ValueError(f"method name {self.name!r}: use lower case, digits, '-'")
        if self.settings is not None and not dataclasses.is_dataclass(self.settings):
            raise ValueError(f"method {self.name!r}: settings= must be a dataclass of its knobs")
        named = [self.guide_knob, self.curve, *(k for k, _ in self.label_knobs)]
        missing = [k for k in named if k is not None and k not in self.knobs]
        if missing:
            raise ValueError(
                f"method {self.name!r} names knob {missing[0]!r}, which its settings= do not declare"
            )

    @property
    def knobs(self) -> tuple[str, ...]:
        """The names of its own knobs (fields of ``settings``), in declaration order."""
        return tuple(f.name for f in dataclasses.fields(self.settings)) if self.settings else ()

    @property
    def token_level(self) -> bool:
        """True when its guide is a token-level RM (a causal LM: GenARM's ARM, a token head)."""
        return self.needs != NOTHING and RewardKind(self.needs).causal_lm

    def uses_guide(self, s) -> bool:
        """True when settings `s` read the guide model (a needed model whose knob is not 0)."""
        if self.needs == NOTHING:
            return False
        return self.guide_knob is None or float(getattr(s, self.guide_knob)) != 0.0

    def label_of(self, s) -> str:
        """The row label of settings `s`."""
        if self.label is not None:
            return self.label(s)
        parts = [self.name]
        for knob, short in self.label_knobs:
            value = getattr(s, knob, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                parts.append(f"{short}={value:g}")
        return " ".join(parts)


_METHODS: dict[str, Method] = {}
_ORIGINAL: dict[str, str] = {}
_LOADED = False


def register(method: Method) -> Method:
    """Add a method to the registry (built-ins call this at import); returns it.

    Raises `ValueError` when another method already has the name.
    """
    have = _METHODS.get(method.name)
    if have is not None and have is not method:
        raise ValueError(f"decoding method {method.name!r} is declared twice")
    _METHODS[method.name] = method
    for old in method.original_names:
        _ORIGINAL[old] = method.name
    return method


def _builtins() -> None:
    """Register the `Method` objects of every module in `argsfw.decoding.methods` (once)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    package = importlib.import_module("argsfw.decoding.methods")
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, Method):
                register(value)


def methods() -> dict[str, Method]:
    """Every registered method by name (the built-ins and those loaded by import path)."""
    _builtins()
    return dict(_METHODS)


def _import(spec: str) -> Method:
    from argsfw.plugins import import_object

    obj = import_object(spec, "decoding method", Method, UnknownMethodError)
    have = _METHODS.get(obj.name)
    if have is not None and have is not obj:
        raise UnknownMethodError(
            f"decoding method {spec!r} is named {obj.name!r}, which a built-in method already uses; rename it"
        )
    _METHODS[obj.name] = obj
    _METHODS[spec] = obj
    return obj


def get_method(name: str, original_api: bool = False) -> Method:
    """The `Method` called `name`: a registered name (``-`` or ``_``, any case), an import path
    ``pkg.module:ATTR``, or with ``original_api`` the original ARGS API's spellings first.

    Raises:
        UnknownMethodError: naming the valid choices.
    """
    _builtins()
    raw = str(name).strip()
    if ":" in raw:
        return _METHODS.get(raw) or _import(raw)
    key = raw.lower()
    if original_api and key in _ORIGINAL:
        return _METHODS[_ORIGINAL[key]]
    for cand in (key, key.replace("_", "-")):
        if cand in _METHODS:
            return _METHODS[cand]
    if key in _ORIGINAL:  # the original API's names that no method shadows (topk, greedy_large)
        return _METHODS[_ORIGINAL[key]]
    names = ", ".join(n for n in _METHODS if ":" not in n)
    raise UnknownMethodError(
        f"unknown decoding method {name!r}; valid methods: {names}, or your own as pkg.module:METHOD"
    )


def find_method(name: str | None) -> Method | None:
    """`get_method`'s answer, or None for an unknown or unimportable name (for reading old records)."""
    try:
        return get_method(str(name)) if name else None
    except UnknownMethodError:
        return None


def resolve_method(name: str, original_api: bool = False) -> str:
    """The registered name of method `name` (see `get_method`)."""
    m = get_method(name, original_api)
    return m.name if ":" not in str(name) else str(name).strip()
