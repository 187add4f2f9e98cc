"""``python -m argsfw.pipeline ARGS``, with every step run inside this one process (tests only).

The pipeline plans, checks, skips finished steps, records and prints exactly as
`argsfw.pipeline` does; only the launch of a step differs: ``argsfw.<entry>.main(args)`` here
instead of a ``python -m argsfw.<entry>`` process. The import of torch, transformers and
Lightning (~8 s of CPU per step, 26 steps in the tiny pipeline) is then paid once.

For runs whose results are the subject (the tiny pipeline's models, reports and science). Real
step processes are what test_plugins.py's pipeline and `make demo` run. Single-device steps
only: a multi-process Trainer must never start in a process that runs other work.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

from argsfw import pipeline


class _StepsInThisProcess:
    """Stands in for the `subprocess` module inside `argsfw.pipeline`."""

    @staticmethod
    def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
        _python, flag, module, *args = command
        if kwargs or flag != "-m" or not module.startswith("argsfw."):
            raise AssertionError(f"not a pipeline step command: {command} {kwargs}")
        if any(a.split("=", 1)[0] == "trainer.devices" and a != "trainer.devices=1" for a in args):
            raise AssertionError(f"a multi-device step must run in its own process: {command}")
        saved, sys.argv = sys.argv, [module, *args]  # what the step records in its meta.json
        try:
            code = importlib.import_module(module).main(args)
        finally:
            sys.argv = saved
        return subprocess.CompletedProcess(command, code)

    @classmethod
    def Popen(cls, command: list[str], stdout=None, stderr=None) -> _Finished:  # noqa: N802
        """The pipeline's launch of a step: the step runs to its end here (in this process one
        step runs at a time, so pipeline.jobs must be 1), then reads as a finished process."""
        if stdout is not None:
            raise AssertionError(f"pipeline.jobs > 1 cannot run in one process: {command}")
        return _Finished(cls.run(command).returncode)


class _Finished:
    """What `_StepsInThisProcess.Popen` returns: a process that has already exited."""

    def __init__(self, returncode: int) -> None:
        self.returncode = returncode

    def poll(self) -> int:
        return self.returncode


if __name__ == "__main__":
    pipeline.subprocess = _StepsInThisProcess()
    sys.exit(pipeline.main(sys.argv[1:]))
