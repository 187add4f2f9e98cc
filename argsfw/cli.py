"""What the entry points share: argument handling, sweeps, run directories and error reporting.

``python -m argsfw.<entry> recipe=NAME key=value … [-m] [--verbose]``. Usage errors (an unknown
recipe or key, a bad value, a missing path or data file) print one line and exit with code 2;
other failures print one line and exit 1; ``--verbose`` or ``HYDRA_FULL_ERROR=1`` shows the
traceback instead.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from argsfw.config.run_dir import RunDir, default_run_dir, release_locks
from argsfw.config.schema import JobConfig
from argsfw.errors import ArgsfwError, ConfigError, Terminated, is_usage_error

log = logging.getLogger("argsfw")


def entry_of_stage(name: str | None) -> str | None:
    """The entry point that runs stage `name` (`argsfw.stages`), None for no or an unknown stage."""
    from argsfw.stages import find_stage

    stage = find_stage(name)
    return stage.entry if stage else None


Runner = Callable[[JobConfig, RunDir], None]


def setup_logging() -> None:
    """INFO-level console logging for argsfw; Lightning's start-up tips muted."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    # Lightning 2.6 + torch 2.13 warn about their own pytree internals on every run; not ours to fix.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _usage(entry: str) -> str:
    from argsfw.config.compose import RECIPE_PATH_ENV, recipes_by_stage
    from argsfw.stages import names

    stages = names(entry)
    by_stage = recipes_by_stage()
    mine = [r for s in stages for r in by_stage.get(s, [])]
    return (
        f"usage: python -m argsfw.{entry} recipe=NAME|path/to/recipe.yaml [key=value ...] [-m] [--verbose]\n"
        f"  stages: {', '.join(stages)}\n"
        f"  recipes: {', '.join(sorted(mine)) or '(none)'}\n"
        f"  (more recipes: YAML files in the folders named by ${RECIPE_PATH_ENV})\n"
        "  -m / --multirun   sweep comma-separated values, e.g. -m decode.weight=0,0.5,1\n"
        "  print_config=true print the resolved config and exit\n"
        "  run_dir=PATH      where the run writes (default runs/<recipe>)\n"
        "  --verbose         show tracebacks"
    )


def _sweep_suffix(overrides: Sequence[str], swept_keys: set[str]) -> str:
    parts = [o for o in overrides if o.split("=", 1)[0] in swept_keys]
    return ",".join(parts).replace("/", "_")


def run_entry(
    entry: str,
    runner: Runner,
    argv: Sequence[str] | None = None,
    default_recipe: str | None = None,
) -> int:
    """Compose, validate and run one job (or a sweep of jobs); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(_usage(entry))
        return 0
    verbose = "--verbose" in args or os.environ.get("HYDRA_FULL_ERROR") == "1"
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if a not in ("-m", "--multirun", "--verbose")]
    setup_logging()
    try:
        return _run_all(entry, runner, overrides, multirun, default_recipe)
    except KeyboardInterrupt:
        print(f"argsfw {entry}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except SystemExit as exc:  # Lightning's SIGTERMException is one, with no exit code (0)
        if type(exc).__name__ != "SIGTERMException" and not isinstance(exc, Terminated):
            raise
        print(
            f"argsfw {entry}: stopped by SIGTERM; what was done is kept: re-run the same "
            "command to resume",
            file=sys.stderr,
        )
        return 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended
    except Exception as exc:
        if verbose:
            raise
        usage = is_usage_error(exc)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        own = isinstance(exc, ArgsfwError)
        hint = (
            "" if usage or own else f" ({type(exc).__name__}; run with --verbose for the traceback)"
        )
        print(f"argsfw {entry}: error: {msg}{hint}", file=sys.stderr)
        return 2 if usage else 1


def _quiet_loading_bars() -> None:
    # transformers 5 draws a "Loading weights" bar per model even with HF_HUB_DISABLE_PROGRESS_BARS;
    # the stage's own progress display is the one to watch.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def _set_threads(n: int | None) -> None:
    # Tiny models are overhead-bound: on a small CPU, extra OpenMP threads gain little and, when
    # another process competes for the cores, their spin-waits make every op ~100x slower.
    if not n:
        return
    import torch

    os.environ["OMP_NUM_THREADS"] = str(n)  # inherited by DDP ranks and pipeline stages
    torch.set_num_threads(n)


# Schema keys holding a list that a user may give as one value (``outputs=runs/a``).
LIST_KEYS = ("outputs",)


def normalise_list_overrides(overrides: Sequence[str]) -> list[str]:
    """``outputs=PATH`` (one value, not a list) becomes ``outputs=['PATH']``.

    Why here and not left to Hydra: its grammar takes ``outputs=runs/a`` for a string and then
    fails to merge it into a list field with a message that names neither fix.
    """
    out = []
    for o in overrides:
        key, eq, value = o.partition("=")
        if eq and key in LIST_KEYS and value.strip() and not value.lstrip().startswith("["):
            quoted = value.strip().strip("'\"").replace("'", "\\'")
            o = f"{key}=['{quoted}']"
        out.append(o)
    return out


def check_hardware(job: JobConfig) -> None:
    """Refuse, before any model loads, an accelerator or device this machine does not have.

    Raises `ConfigError` naming the key, what the machine has and the setting that works here.
    """
    from argsfw.stages import find_stage

    stage = find_stage(job.stage)
    uses_trainer = stage is not None and stage.trainer
    accel = job.trainer.accelerator if uses_trainer else "auto"
    wants_cuda = accel in ("gpu", "cuda")
    # a stage that runs outside a Trainer names its device in its own section (eval.device)
    own = getattr(job, stage.section, None) if stage is not None and stage.section else None
    device = str(getattr(own, "device", None) or "")
    eval_cuda = device.startswith("cuda")
    if not (wants_cuda or eval_cuda or accel == "mps"):
        return
    import torch

    if accel == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "trainer.accelerator=mps but this machine has no Apple MPS device; "
            "use trainer=cpu (or trainer.accelerator=cpu)"
        )
    count = torch.cuda.device_count() if (wants_cuda or eval_cuda) else 0
    if eval_cuda and count == 0:
        raise ConfigError(
            f"{stage.section}.device={device} but this machine has no CUDA GPU; use "
            f"{stage.section}.device=cpu (or leave it unset: cuda when there is one, else cpu)"
        )
    if not wants_cuda:
        return
    if count == 0:
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ConfigError(
            f"trainer.accelerator={accel} but this machine has no CUDA GPU (torch {torch.__version__}, "
            f"{build}); use trainer=cpu (or trainer.accelerator=cpu), or run on a GPU machine"
        )
    from argsfw.devices import parse_devices

    devices = job.trainer.devices
    spec = parse_devices(devices)  # "0,1" is ids 0 and 1, "2" two devices (argsfw.devices)
    wanted = max(spec) + 1 if isinstance(spec, list) else (spec if isinstance(spec, int) else 0)
    if wanted > count:
        raise ConfigError(
            f"trainer.devices={devices} but this machine has {count} CUDA GPU(s); "
            f"use trainer.devices={count} (or -1 for all of them)"
        )


def check_writable(run_dir: Path) -> None:
    """Refuse, before any model loads, a run directory this process cannot write.

    Why a real write and not ``os.access``: root passes every permission check, and only a
    write tells a read-only file system. Raises `ConfigError` naming the directory and why.
    """
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run_dir {path} is a file, not a directory; set run_dir= to a directory")
    probe = path.absolute()
    while not probe.exists():  # the nearest existing folder is where the run dir gets created
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(
            f"run_dir {path} cannot be created: {probe} is a file; set run_dir= to a directory"
        )
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        where = "" if probe == path.absolute() else f" ({probe})"
        why = "is on a read-only file system" if exc.errno == errno.EROFS else "is not writable"
        raise ConfigError(
            f"run_dir {path}{where} {why} ({exc.strerror}); set run_dir= to a writable directory"
        ) from None


def no_stage_message(recipe: str) -> str:
    """The error for a recipe that sets no ``stage:`` (e.g. a file with only its header)."""
    from argsfw.stages import names

    return (
        f"recipe '{recipe}' sets no stage; add a line 'stage: NAME' to it "
        f"(one of {', '.join(names())})"
    )


def _run_all(entry, runner, overrides, multirun, default_recipe) -> int:
    from argsfw.config.compose import compose, expand_sweep, to_yaml

    jobs = expand_sweep(overrides) if multirun else [overrides]
    swept = (
        {o.split("=", 1)[0] for o in overrides if "," in o.split("=", 1)[-1]} if multirun else set()
    )
    if multirun and len(jobs) > 1:
        log.info("sweep of %d runs", len(jobs))
    for i, job_overrides in enumerate(jobs):
        job = compose(normalise_list_overrides(job_overrides), default_recipe=default_recipe)
        expected = entry_of_stage(job.stage)
        if expected is None:  # a recipe file with only its header: nothing names the stage
            raise ConfigError(no_stage_message(job.recipe))
        if expected != entry:
            raise ConfigError(
                f"recipe '{job.recipe}' is a {job.stage or 'stage-less'} recipe; run it with python -m argsfw.{expected}"
            )
        if job.print_config:
            print(to_yaml(job, only_used=True))
            continue
        check_hardware(job)
        _quiet_loading_bars()
        _set_threads(job.num_threads)
        run = RunDir(default_run_dir(job, _sweep_suffix(job_overrides, swept)))
        check_writable(run.path)
        if multirun:
            log.info("run %d/%d: %s -> %s", i + 1, len(jobs), " ".join(job_overrides), run.path)
        try:
            runner(job, run)  # locks the run dir(s) it writes (`RunDir.claim`)
        finally:
            release_locks()
    return 0
