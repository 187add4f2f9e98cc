"""Hydra glue: compose a recipe with ``key=value`` overrides into a validated `JobConfig`.

We use Hydra's compose API rather than ``@hydra.main`` so that (1) nothing is written to
``outputs/`` or log files unasked, (2) every composition or validation problem becomes one
clear `ConfigError` (exit code 2) instead of Hydra's own report, and (3) multirun sweeps
expand with Hydra's own override grammar and sweeper (``-m decode.weight=0,0.5,1``) into
ordinary runs, each with its own run directory.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import fields, is_dataclass
from pathlib import Path

from omegaconf import OmegaConf

from argsfw.config.schema import JobConfig, job_schema
from argsfw.errors import ConfigError

GROUPS = ("model", "data", "trainer", "strategy", "logger", "decode")
_SCHEMA_NAME = "argsfw_job_schema"
RECIPE_PATH_ENV = "ARGSFW_RECIPE_PATH"


def _asset_dir(name: str) -> Path:
    """``configs/`` or ``recipes/``: inside the installed package, or beside it in a checkout.

    The wheel carries the two top-level folders as ``argsfw/configs`` and ``argsfw/recipes``
    (hatchling's force-include, see pyproject.toml); a source checkout or editable install has
    them at the repository root, next to ``argsfw/``.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / name, package.parent / name):
        if candidate.is_dir() and (name != "configs" or (candidate / "argsfw.yaml").is_file()):
            return candidate
    raise ConfigError(
        f"argsfw's {name}/ folder is missing from {package}; reinstall argsfw (pip install argsfw)"
    )


CONF_DIR = _asset_dir("configs")
RECIPE_DIR = _asset_dir("recipes")


def recipe_dirs() -> list[Path]:
    """Where recipes are looked up: the folders in ``$ARGSFW_RECIPE_PATH``, then the shipped ones."""
    extra = [Path(p).expanduser() for p in os.environ.get(RECIPE_PATH_ENV, "").split(os.pathsep)]
    for d in extra:
        if str(d) not in ("", ".") and not d.is_dir():
            raise ConfigError(
                f"{RECIPE_PATH_ENV} names '{d}', which is not a folder; fix or unset it"
            )
    return [d for d in extra if str(d) not in ("", ".")] + [RECIPE_DIR]


def recipe_files() -> dict[str, Path]:
    """Recipe name -> YAML file over `recipe_dirs`; a name found in two folders is an error."""
    found: dict[str, Path] = {}
    for d in recipe_dirs():
        for path in sorted(d.glob("*.yaml")):
            if path.stem in found and found[path.stem] != path:
                raise ConfigError(
                    f"recipe '{path.stem}' is defined twice ({found[path.stem]} and {path}); "
                    f"rename one of them"
                )
            found.setdefault(path.stem, path)
    return found


def available_recipes() -> list[str]:
    """Names of the recipes in `recipe_dirs` (shipped ones and ``$ARGSFW_RECIPE_PATH``)."""
    return sorted(recipe_files())


def find_recipe(spec: str) -> Path:
    """The YAML file of ``recipe=SPEC``: a recipe name, or a path to a YAML file of one's own."""
    if spec.endswith((".yaml", ".yml")) or os.sep in spec or "/" in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"recipe file '{spec}' does not exist; give a YAML file or a recipe name"
            )
        return path.resolve()
    files = recipe_files()
    if spec not in files:
        near = difflib.get_close_matches(spec, list(files), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise ConfigError(
            f"unknown recipe '{spec}'; {hint}available recipes: {', '.join(sorted(files))}"
        )
    return files[spec]


def recipes_by_stage() -> dict[str, list[str]]:
    """Stage -> recipe names, read from each recipe's ``stage:`` line (no composition)."""
    out: dict[str, list[str]] = {}
    for name, path in recipe_files().items():
        try:
            stage = OmegaConf.load(path).get("stage")
        except Exception:
            stage = None
        out.setdefault(str(stage), []).append(name)
    return out


def group_options(group: str) -> list[str]:
    """Names of the options of one config group (e.g. ``strategy`` → deepspeed_zero2, …)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


_CURRENT_STAGE: list[str | None] = [None]  # a stage of one's own being composed


def _register_schema(stage: str | None = None) -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=_SCHEMA_NAME, node=job_schema(stage))


def recipe_stage(path: Path, overrides: list[str]) -> str | None:
    """The ``stage`` a recipe file or a ``stage=`` override sets (to find a stage of one's own)."""
    for o in reversed(overrides):
        if o.startswith("stage="):
            return o.split("=", 1)[1]
    try:
        stage = OmegaConf.load(path).get("stage")
    except Exception:  # the recipe's own check names what is wrong with the file
        return None
    return str(stage) if stage else None


def _register_recipe(name: str, path: Path) -> None:
    # Recipes live outside the Hydra config folder (top-level recipes/, or any file a user
    # names), so each one is handed to Hydra through its ConfigStore as the `recipe` group's
    # option; its defaults list (`override /model: …`) composes exactly as a file there would.
    from hydra.core.config_store import ConfigStore

    try:
        node = OmegaConf.load(path)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"recipe '{path}' is not valid YAML: {first}") from None
    header = path.read_text().lstrip().splitlines()[:1]
    if header != ["# @package _global_"]:
        raise ConfigError(
            f"recipe '{path}' must start with the line '# @package _global_' (see recipes/)"
        )
    ConfigStore.instance().store(group="recipe", name=name, node=node, package="_global_")


def _schema_keys(prefix: str) -> list[str]:
    """Dotted keys under `prefix` in the schema ("" for the top level)."""
    node: object = job_schema(_CURRENT_STAGE[0])
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
            f"name a recipe: recipe=NAME or recipe=path/to/file.yaml (available: {', '.join(available_recipes())})"
        )
    path = find_recipe(recipe)
    recipe = path.stem
    overrides = [_decode_option(o) for o in overrides if not o.startswith("recipe=")]
    overrides.append(f"recipe={recipe}")
    stage = recipe_stage(path, overrides)
    _CURRENT_STAGE[0] = stage if stage and ":" in stage else None
    _register_schema(_CURRENT_STAGE[0])
    _register_recipe(recipe, path)
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


def _decode_option(override: str) -> str:
    """A ``decode`` override as Hydra takes it.

    ``decode=NAME`` or ``decode.method=NAME`` selects the method's group option: its file in
    ``configs/decode`` (``args-greedy`` is args_greedy.yaml), else an option made here holding
    only ``method: NAME`` (a built-in without a file, or one's own ``pkg.module:METHOD``), so
    another method's knobs never stay behind. ``decode.<key>=value`` sets a shared key or a
    knob of the method, which the composed section may not hold yet (``++``).
    """
    key, eq, value = override.partition("=")
    bare = key.lstrip("+~")
    if not eq or not bare.startswith("decode") or key.startswith("~"):
        return override
    if bare == "decode.method" or bare == "decode":
        return f"decode={_method_option(value)}"
    if bare.startswith("decode."):
        return f"++{bare}={value}"
    return override


def _method_option(name: str) -> str:
    """The ``decode`` group option of method `name` (its YAML file, or one registered here)."""
    files = group_options("decode")
    if name in files or "," in name:  # a file, or a sweep Hydra expands first
        return name
    if name.replace("-", "_") in files:
        return name.replace("-", "_")
    from hydra.core.config_store import ConfigStore

    from argsfw.decoding.registry import find_method

    found = find_method(name) if ":" not in name else None
    if found is not None and found.name.replace("-", "_") in files:
        return found.name.replace("-", "_")
    option = "method_" + re.sub(r"\W", "_", name)
    # one's own method (pkg.module:METHOD) or an unknown name: decode.method carries it, and the
    # settings check names what is wrong with it
    ConfigStore.instance().store(group="decode", name=option, node={"method": name})
    return option


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


def to_yaml(job: JobConfig, only_used: bool = False) -> str:
    """The resolved config as YAML (no redaction: see `argsfw.config.run_dir`).

    ``only_used``: the top-level keys and only the sections the job's stage reads
    (``print_config``); the run directory's config.yaml keeps every section.
    """
    tree = OmegaConf.structured(job)
    if only_used:
        used = set(job.sections())
        tree = OmegaConf.create(
            {k: v for k, v in tree.items() if not OmegaConf.is_dict(v) or k in used}
        )
    return OmegaConf.to_yaml(tree)
