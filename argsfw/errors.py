"""Error types the entry points turn into one clear line (exit code 2 for usage errors)."""

from __future__ import annotations


class ArgsfwError(Exception):
    """Base class of argsfw's own errors."""


class UsageError(ArgsfwError, ValueError):
    """The user asked for something that cannot work: bad key, value, path or input file.

    Entry points print ``str(exc)`` on one line and exit with code 2; the message must name
    the bad thing and say how to fix it.
    """


class ConfigError(UsageError):
    """A configuration key or value is invalid."""


def is_usage_error(exc: BaseException) -> bool:
    """True for errors caused by the user's input rather than by a bug in argsfw.

    Library packages raise their own `ValueError` subclasses (model paths, data files,
    evaluation inputs) without depending on this module; they are recognised by name here.
    """
    names = {
        "ModelPathError",
        "DataError",
        "EvalInputError",
        "DecodeInputError",
        "OutputConflictError",
    }
    return isinstance(exc, UsageError) or any(c.__name__ in names for c in type(exc).__mro__)


class NonFiniteLossError(ArgsfwError):
    """The training loss became NaN or infinite; the message names the step and batch (exit 1).

    Here, not in `argsfw.fit`, so the Trainer's guard (`argsfw.trainer`) and the fit entry point
    both import it without importing each other.
    """


class StepFailed(ArgsfwError):
    """A stage of a pipeline failed; its own output said why (exit code 1)."""


class Terminated(SystemExit):
    """SIGTERM stopped a run that keeps what it did (the pipeline, after its running steps
    stopped at their own safe points); the entry point exits 143 with a resume hint."""
