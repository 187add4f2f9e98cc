"""The stage registry: every entry point's stage (the fit stages, predict, evaluate, pipeline) is
declared once, by a `Stage`, in its own module here; the schema, the CLI, fit, export, the
pipeline, predict's checks and the plots read it, and ``python -m argsfw.methods`` lists it.

A fit stage's module holds its settings dataclass (the job config's section of the stage's
name), what it makes, its model inputs and its plot style, and names its
``build(job, run) -> StageParts`` by import path (its LightningModule's module), so composing a
config never imports Lightning. Built-in stages are the `Stage` objects of the modules in this
package, found by scanning it: a new built-in stage is its declaration here and its module
(plus a recipe). A stage of one's own is named by import path in a recipe,
``stage: my_pkg.my_stage:STAGE`` (see ``examples/``): why an import path rather than an entry
point — no packaging or reinstall, and the recipe names exactly the code that ran.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argsfw.decoding.types import RewardKind
from argsfw.errors import ConfigError

ENTRIES = ("fit", "predict", "evaluate", "pipeline")
POLICY = "policy"  # `Stage.makes` of a stage whose output is a policy
# the shared sections of the job config; each stage names those it reads
SHARED = ("model", "data", "trainer", "strategy", "logger", "optim")
FIT_SECTIONS = SHARED


@dataclass(frozen=True)
class Stage:
    """One stage of an entry point.

    Args:
        name: ``stage:`` in a recipe; a fit stage's run dir holds ``hf/`` (its export).
        entry: the entry point that runs it (``python -m argsfw.<entry>``), one of `ENTRIES`.
        summary: one line for the listing.
        config: its own settings dataclass, the job config's section ``section`` (default: the
            stage's name); None when it has none.
        build: fit stages: ``build(job, run) -> argsfw.modules.StageParts``, or its import path
            ``"pkg.module:function"`` (imported only when the stage runs).
        trainer: runs a Lightning Trainer (so its accelerator and devices are checked first).
        sections: the shared sections (`SHARED`) it reads; ``print_config`` shows only these and
            its own.
        makes: what its output is: ``policy``, ``reward_model:<RewardKind>`` (the pipeline hands
            it to predict, predict's checks name the stage that makes a missing guide), or the
            files an entry point writes (for the listing).
        check: ``check(job)``: checks across sections (raise `ConfigError`), run at composition.
        reads_reward_model: a fit stage that loads ``reward_model=`` (a sequence classifier) beside
            ``policy=``: both are checked before anything is written.
        caches_frozen: a fit stage that reads ``model.cache_frozen`` (trains the top layers on
            cached bottom features, `argsfw.modules._top_layers.FrozenBottomCache`).
        model_inputs: ``model_inputs(job) -> [(what, spec, head)]``: the model inputs fit checks
            before anything is written (``head``: ``argsfw.models.CAUSAL_LM`` / ``SEQ_CLS``, or
            None for any); it raises `UsageError` naming a missing one. Default: ``policy=`` and
            ``reward_model=`` with ``reads_reward_model``, else the base model.
        order: its place in listings, and which stage a hint names for what several make
            (lower first; the built-ins follow the usual pipeline: sft, rm, ppo, dpo, ...).
        color, marker: a stage whose policy is a training-time baseline (PPO, DPO) sets its
            style in evaluate's plots, where an output whose label starts with the stage's
            name is drawn as a reference line, and the pipeline never hands its policy to
            predict steps as their default (`argsfw.pipeline`); None: neither.
    """

    name: str
    entry: str
    summary: str
    config: type | None = None
    section: str | None = None
    build: str | Callable[..., Any] | None = None
    trainer: bool = True
    sections: tuple[str, ...] = FIT_SECTIONS
    makes: str = ""
    check: Callable[[Any], None] | None = None
    reads_reward_model: bool = False
    caches_frozen: bool = False
    model_inputs: Callable[[Any], list[tuple[str, str | None, str | None]]] | None = None
    order: int = 100
    color: str | None = None
    marker: str = "*"

    def __post_init__(self) -> None:
        if self.entry not in ENTRIES:
            raise ValueError(f"stage {self.name!r}: entry={self.entry!r}; choose one of {ENTRIES}")
        if self.entry == "fit" and self.build is None:
            raise ValueError(f"fit stage {self.name!r} needs build=")
        if self.config is not None and self.section is None:
            object.__setattr__(self, "section", self.name.rsplit(":", 1)[-1].lower())

    @property
    def reward_kind(self) -> RewardKind | None:
        """The `RewardKind` of the reward model it makes (``makes="reward_model:<kind>"``), or None."""
        kind, _, sub = self.makes.partition(":")
        return RewardKind(sub) if kind == "reward_model" and sub else None

    def build_fn(self) -> Callable[..., Any]:
        """The stage's ``build(job, run)``, imported on first use."""
        if callable(self.build):
            return self.build
        module, _, attr = str(self.build).partition(":")
        return getattr(importlib.import_module(module), attr)


_STAGES: dict[str, Stage] = {}
_LOADED = False


def register(stage: Stage) -> Stage:
    """Add a stage (the package scan does, for every `Stage` of a module here); returns it.

    Raises `ValueError` on a clash."""
    have = _STAGES.get(stage.name)
    if have is not None and have is not stage:
        raise ValueError(f"stage {stage.name!r} is declared twice")
    _STAGES[stage.name] = stage
    return stage


def _builtins() -> None:
    """Register the `Stage` objects of every module of this package (once): fit stages first,
    each group in module order (the listing does not depend on what was imported before)."""
    global _LOADED, _STAGES
    if _LOADED:
        return
    _LOADED = True
    order: list[Stage] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        order += [v for v in vars(module).values() if isinstance(v, Stage) and v not in order]
    for stage in order:
        register(stage)
    order.sort(key=lambda s: (ENTRIES.index(s.entry), s.order))
    rank = {s.name: i for i, s in enumerate(order)}
    _STAGES = dict(sorted(_STAGES.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def stages() -> dict[str, Stage]:
    """The built-in stages by name, in listing order."""
    _builtins()
    return {n: s for n, s in _STAGES.items() if ":" not in n}


def names(entry: str | None = None) -> list[str]:
    """The built-in stage names (of one entry point)."""
    return [n for n, s in stages().items() if entry is None or s.entry == entry]


def get_stage(name: str) -> Stage:
    """The stage called `name`, or a stage of one's own by import path ``pkg.module:ATTR``.

    Raises `ConfigError` naming the valid stages, or what is wrong with the import.
    """
    _builtins()
    name = str(name).strip()
    if name in _STAGES:
        return _STAGES[name]
    if ":" not in name:
        raise ConfigError(
            f"stage={name!r} is not valid; choose one of {', '.join(names())} "
            "or name your own as pkg.module:STAGE"
        )
    from argsfw.plugins import import_object

    obj = import_object(name, "stage", Stage, ConfigError)
    if obj.section in (*SHARED, *(s.section for s in stages().values() if s.section)):
        raise ConfigError(
            f"stage {name!r}: its config section {obj.section!r} is taken; set Stage(section=...)"
        )
    _STAGES[name] = obj
    return obj


def maker(makes: str) -> Stage | None:
    """The built-in fit stage a hint names for `makes` (``policy``, ``reward_model:<kind>``): of
    those that make it, the first in listing order; None when none does."""
    return next((s for s in stages().values() if s.entry == "fit" and s.makes == makes), None)


def find_stage(name: str | None) -> Stage | None:
    """`get_stage`'s answer, or None."""
    try:
        return get_stage(name) if name else None
    except ConfigError:
        return None
