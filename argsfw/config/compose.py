"""Hydra glue: compose a recipe with ``key=value`` overrides into a validated `JobConfig`.

We use Hydra's compose API rather than ``@hydra.main`` so that (1) nothing is written to
``outputs/`` or log files unasked, (2) every composition or validation problem becomes one
clear `ConfigError` (exit code 2) instead of Hydra's own report, and (3) multirun sweeps
expand with Hydra's own override grammar and sweeper (``-m decode.weight=0,0.5,1``) into
ordinary runs, each with its own run directory.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import fields, is_dataclass
from pathlib import Path

from omegaconf import OmegaConf

from argsfw.config.schema import JobConfig
from argsfw.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("model", "data", "trainer", "strategy", "logger", "decode")
_SCHEMA_NAME = "argsfw_job_schema"


def available_recipes() -> list[str]:
    """Names of the recipes shipped in ``argsfw/conf/recipe``."""
    return sorted(p.stem for p in (CONF_DIR / "recipe").glob("*.yaml"))


def group_options(group: str) -> list[str]:
    """Names of the options of one config group (e.g. ``strategy`` → deepspeed_zero2, …)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=_SCHEMA_NAME, node=JobConfig)


def _schema_keys(prefix: str) -> list[str]:
    """Dotted keys under `prefix` in the schema ("" for the top level)."""
    node: object = JobConfig
    for part in [p for p in prefix.split(".") if p]:
        match = [f for f in fields(node) if f.name == part] if is_dataclass(node) else []
        if not match:
            return []
        node = match[0].type if is_dataclass(match[0].type) else _field_type(node, part)
    if not is_dataclass(node):
        return []
    return [f"{prefix}.{f.name}" if prefix else f.name for f in fields(node)]


def _field_type(cls, name):
    # `from __future__ import annotations` leaves types as strings: resolve on a default instance.
    value = getattr(cls(), name, None)
    return type(value) if is_dataclass(value) else None


def _unknown_key_message(key: str) -> str:
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    candidates = _schema_keys(parent) or _schema_keys("")
    near = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
    hint = (
        f"; did you mean {', '.join(near)}?"
        if near
        else f"; valid keys here: {', '.join(candidates)}"
    )
    return f"unknown config key '{key}'{hint}"


def _translate(exc: Exception, recipe: str) -> ConfigError:
    """Turn Hydra/OmegaConf errors into one line that names the bad key or recipe."""
    chain, e = [], exc
    while e is not None and len(chain) < 6:
        chain.append(e)
        e = e.__cause__ or e.__context__
    text = " ".join(str(c) for c in chain)
    if (
        re.search(
            r"Could not find 'recipe/|In 'recipe/[^']*': Could not find|recipe.*not found", text
        )
        and "recipe/" in text
    ):
        return ConfigError(
            f"unknown recipe '{recipe}'; available recipes: {', '.join(available_recipes())}"
        )
    m = re.search(r"Could not (?:load|find) '(\w+)/([^']+)'", text)
    if m and m.group(1) in GROUPS:
        g = m.group(1)
        return ConfigError(
            f"unknown {g} option '{m.group(2)}'; available: {', '.join(group_options(g))}"
        )
    for c in chain:
        full_key = getattr(c, "full_key", None)
        if full_key and ("not in" in str(c) or "Key '" in str(c) and "not" in str(c)):
            return ConfigError(_unknown_key_message(str(full_key)))
    m = re.search(r"Key '([\w.]+)' is not in struct", text) or re.search(
        r"Could not override '([\w.]+)'", text
    )
    if m:
        return ConfigError(_unknown_key_message(m.group(1)))
    m = re.search(r"Value '(.*?)' (?:of type '.*?' )?could not be converted to (\w+)", text)
    key = next((getattr(c, "full_key", None) for c in chain if getattr(c, "full_key", None)), None)
    if m:
        return ConfigError(f"config key '{key}': value '{m.group(1)}' is not a valid {m.group(2)}")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"invalid configuration: {first}")


def compose(overrides: list[str], default_recipe: str | None = None) -> JobConfig:
    """Compose ``recipe=NAME`` plus overrides into a validated `JobConfig`.

    Raises `ConfigError` for an unknown recipe, key, group option or an invalid value.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    recipe = next(
        (o.split("=", 1)[1] for o in overrides if o.startswith("recipe=")), default_recipe
    )
    if not recipe:
        raise ConfigError(
            f"name a recipe: recipe=NAME (available: {', '.join(available_recipes())})"
        )
    if recipe not in available_recipes():
        raise ConfigError(
            f"unknown recipe '{recipe}'; available recipes: {', '.join(available_recipes())}"
        )
    overrides = [o for o in overrides if not o.startswith("recipe=")] + [f"recipe={recipe}"]
    _register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="argsfw", overrides=overrides)
        cfg.recipe = recipe
        OmegaConf.resolve(cfg)
        job = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except (
        ValueError
    ) as exc:  # __post_init__ checks raise ConfigError (a ValueError) inside OmegaConf
        inner = exc.__cause__ or exc.__context__
        if isinstance(inner, ConfigError):
            raise inner from None
        raise _translate(exc, recipe) from None
    except Exception as exc:  # Hydra/OmegaConf composition errors
        inner = next((c for c in _causes(exc) if isinstance(c, ConfigError)), None)
        raise (inner or _translate(exc, recipe)) from None
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(job, JobConfig)
    return job


def _causes(exc: BaseException):
    seen = 0
    while exc is not None and seen < 8:
        yield exc
        exc = exc.__cause__ or exc.__context__
        seen += 1


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """Expand Hydra sweep syntax (``a=1,2 b=x,y``) into the list of single-run overrides.

    Uses Hydra's own override parser and basic sweeper, so the grammar is Hydra's.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ConfigError(f"cannot parse overrides: {str(exc).splitlines()[0]}") from None
    return BasicSweeper.split_arguments(parsed, None)[0]


def to_yaml(job: JobConfig) -> str:
    """The resolved config as YAML (no redaction: see `argsfw.config.run_dir`)."""
    return OmegaConf.to_yaml(OmegaConf.structured(job))
