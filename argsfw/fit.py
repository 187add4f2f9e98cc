"""`python -m argsfw.fit recipe=NAME key=value ...`"""

from __future__ import annotations

import sys

from argsfw.cli import run_entry


def _run(job, run) -> None:
    raise NotImplementedError("argsfw.fit is being built (see the project issues)")


def main(argv=None) -> int:
    """Entry point; returns the exit code (2 for usage errors)."""
    return run_entry("fit", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
