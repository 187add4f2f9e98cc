"""The stage registry: every entry point's stage (the fit stages, predict, evaluate, pipeline) is
declared once, by a `Stage`, in its own module here; the schema, the CLI, fit, export and the
pipeline read it, and ``python -m argsfw.methods`` lists it.

A fit stage's module holds its settings dataclass (the job config's section of the stage's
name) and names its ``build(job, run) -> StageParts`` by import path, so composing a config
never imports Lightning. A stage of one's own is named by import path in a recipe,
``stage: my_pkg.my_stage:STAGE`` (see ``examples/``): why an import path rather than an entry
point — no packaging or reinstall, and the recipe names exactly the code that ran.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argsfw.errors import ConfigError

# the modules declaring the built-in stages, in listing order (a new stage: one more name here)
BUILTIN = ("sft", "rm", "ppo", "dpo", "arm", "token_rm", "value", "entries")
ENTRIES = ("fit", "predict", "evaluate", "pipeline")
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
        makes: what its output is (``policy``, ``reward_model:sequence`` ...), for the listing.
        check: ``check(job)``: checks across sections (raise `ConfigError`), run at composition.
        reads_reward_model: a fit stage that loads ``reward_model=`` (a sequence classifier) beside
            ``policy=``: both are checked before anything is written.
        caches_frozen: a fit stage that reads ``model.cache_frozen`` (trains the top layers on
            cached bottom features, `argsfw.modules._top_layers.FrozenBottomCache`).
        color, marker: a stage whose policy is a training-time baseline (PPO, DPO) sets its
            style in evaluate's plots, where an output whose label starts with the stage's
            name is drawn as a reference line; None: not drawn as one.
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
    color: str | None = None
    marker: str = "*"

    def __post_init__(self) -> None:
        if self.entry not in ENTRIES:
            raise ValueError(f"stage {self.name!r}: entry={self.entry!r}; choose one of {ENTRIES}")
        if self.entry == "fit" and self.build is None:
            raise ValueError(f"fit stage {self.name!r} needs build=")
        if self.config is not None and self.section is None:
            object.__setattr__(self, "section", self.name.rsplit(":", 1)[-1].lower())

    def build_fn(self) -> Callable[..., Any]:
        """The stage's ``build(job, run)``, imported on first use."""
        if callable(self.build):
            return self.build
        module, _, attr = str(self.build).partition(":")
        return getattr(importlib.import_module(module), attr)


_STAGES: dict[str, Stage] = {}
_LOADED = False


def register(stage: Stage) -> Stage:
    """Add a stage (built-ins call this at import); returns it. Raises `ValueError` on a clash."""
    have = _STAGES.get(stage.name)
    if have is not None and have is not stage:
        raise ValueError(f"stage {stage.name!r} is declared twice")
    _STAGES[stage.name] = stage
    return stage


def _builtins() -> None:
    global _LOADED, _STAGES
    if not _LOADED:
        _LOADED = True
        # why the reorder: a stage module imported earlier (argsfw.modules.ppo imports
        # argsfw.stages.ppo for its config) registers first; the listing follows BUILTIN
        order: list[str] = []
        for name in BUILTIN:
            module = importlib.import_module(f"argsfw.stages.{name}")
            order += [v.name for v in vars(module).values() if isinstance(v, Stage)]
        rank = {name: i for i, name in enumerate(order)}
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


def find_stage(name: str | None) -> Stage | None:
    """`get_stage`'s answer, or None."""
    try:
        return get_stage(name) if name else None
    except ConfigError:
        return None
