"""``python -m argsfw.pipeline recipe=NAME`` — the whole study as one resumable command.

Runs the fit stages (``pipeline.fit``: SFT → RM → PPO → …), every decode setting
(``pipeline.predict``, sweeps included) and the evaluation, each as its
own ``python -m argsfw.<entry>`` process with its own run directory under this run's
directory. Separate processes keep each stage's memory apart and let any stage use several
devices (Lightning re-launches the *stage* command for its other ranks, not the pipeline).
Re-running the same command skips finished fit stages, resumes unfinished ones, lets
predict skip the prompts it already wrote, and skips an evaluation newer than everything it reads.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from argsfw.cli import run_entry
from argsfw.config.run_dir import RunDir
from argsfw.config.schema import JobConfig
from argsfw.errors import ConfigError, StepFailed, Terminated

log = logging.getLogger("argsfw.pipeline")


@dataclass
class Step:
    """One stage command of the pipeline."""

    name: str
    entry: str  # fit | predict | evaluate
    args: list[str]
    run_dir: Path

    def command(self) -> list[str]:
        return [sys.executable, "-m", f"argsfw.{self.entry}", *self.args]


def _merge(*groups: list[str]) -> list[str]:
    """Override lists merged left to right; a later ``key=value`` replaces an earlier one."""
    merged: dict[str, str] = {}
    flags: list[str] = []
    for group in groups:
        for o in group:
            if "=" in o:
                merged[o.split("=", 1)[0]] = o
            elif o not in flags:
                flags.append(o)
    return flags + list(merged.values())


def fit_complete(run_dir: Path) -> bool:
    """A fit run is complete when its meta says so and its HF export exists."""
    meta = run_dir / "meta.json"
    return (
        meta.is_file()
        and json.loads(meta.read_text()).get("status") == "completed"
        and (run_dir / "hf" / "config.json").is_file()
    )


def evaluate_current(step: Step, earlier: list[Step]) -> bool:
    """An evaluate step's report is current: complete, made by this same command, and newer than
    every output it reads (each predict step's ``outputs.jsonl`` and ``DONE``, sweeps included)
    and every fit it names (``meta.json``), with as many inputs as there are outputs now.

    Re-running a finished pipeline then skips its evaluation as it skips finished fits and
    predict steps; anything newer, or a changed evaluate command, evaluates again."""
    from argsfw.eval.report import REPORT_DONE, report_complete

    run = step.run_dir
    if not report_complete(run) or not (run / "meta.json").is_file():
        return False
    meta = json.loads((run / "meta.json").read_text())
    command = str(meta.get("command", "")).split(" ", 3)
    if meta.get("status") != "completed" or command[3:] != [" ".join(step.args)]:
        return False
    outputs = [f for s in earlier if s.entry == "predict" for f in s.run_dir.rglob("outputs.jsonl")]
    read = (
        outputs
        + [f.with_name("DONE") for f in outputs]
        + [s.run_dir / "meta.json" for s in earlier if s.entry == "fit"]
    )
    made = (run / REPORT_DONE).stat().st_mtime
    newest = max((f.stat().st_mtime for f in read if f.is_file()), default=0.0)
    return meta.get("inputs") == len(outputs) and newest < made


# ``@NAME`` at the start of a value or list item: a reference to fit step NAME's run directory
_REFERENCE = re.compile(r"(?:^|[=,\[\s'\"])@([A-Za-z_][\w-]*)")


def _split(step: str, spec: str) -> list[str]:
    """``shlex.split`` of one step's string; broken quoting names the step (ConfigError)."""
    try:
        return shlex.split(spec)
    except ValueError as exc:
        raise ConfigError(
            f"pipeline step '{step}': cannot split {spec!r} ({str(exc).lower()}); "
            "check its quotes: close or drop the unmatched one"
        ) from None


def check_plan(job: JobConfig, steps: list[Step]) -> None:
    """Refuse a plan whose steps cannot all run, before the first one does (ConfigError).

    A ``@NAME`` no fit step defines, or an evaluate step with no predict step to read, would
    otherwise fail only after every fit step had trained.
    """
    p = job.pipeline
    for step in steps:
        for arg in step.args:
            m = _REFERENCE.search(arg)
            if m:
                raise ConfigError(
                    f"pipeline step '{step.name}' refers to @{m.group(1)}, but pipeline.fit has no "
                    f"step '{m.group(1)}' (fit steps: {', '.join(p.fit) or 'none'}); add it to "
                    "pipeline.fit or use a run directory"
                )
    own_outputs = any(o.startswith("outputs=") for o in p.evaluate_overrides)
    if p.evaluate and not p.predict and not own_outputs:
        raise ConfigError(
            f"pipeline step 'evaluate' ({p.evaluate}) has nothing to evaluate: pipeline.predict is "
            "empty; add a predict step (pipeline.predict.NAME='decode=greedy') or set "
            "pipeline.evaluate=null"
        )


def _group_override(job: JobConfig, root: Path) -> str:
    """``logger.group=<this pipeline's group>``: its own ``logger.group``, else its run dir's name.

    Every step's runs then share one W&B group; quoted, so any directory name stays one string.
    """
    group = job.logger.group or Path(root).resolve().name
    return "logger.group='" + group.replace("'", "\\'") + "'"


def _made_by(fit: dict[str, str]) -> dict[str, str]:
    """``{"policy": step, "reward_model": step}``: the first fit step whose stage makes a policy
    that is not a training-time baseline (SFT's, not DPO's or PPO's: a DPO step listed first
    must not become every decoding row's policy), and the first that makes a sequence reward
    model, read from each step's declared stage (`argsfw.stages.Stage.makes`, ``color``); a step
    whose recipe cannot be read is left to `check_steps`."""
    from argsfw.config.compose import find_recipe, recipe_stage
    from argsfw.decoding.types import RewardKind
    from argsfw.stages import POLICY, find_stage

    made: dict[str, str] = {}
    for name, spec in fit.items():
        recipe, *own = _split(name, spec)
        try:
            stage = find_stage(recipe_stage(find_recipe(recipe), own))
        except ConfigError:
            continue
        if stage is not None and stage.makes == POLICY and stage.color is None:
            made.setdefault("policy", name)
        elif stage is not None and stage.reward_kind is RewardKind.SEQUENCE:
            made.setdefault("reward_model", name)
    return made


def plan(job: JobConfig, root: Path) -> list[Step]:
    """The ordered steps of `job`'s pipeline, with every ``@<fit step>`` resolved to its run dir.

    Raises `ConfigError` for broken quoting or a plan `check_plan` refuses, naming the step.
    """
    p = job.pipeline
    dirs = {name: root / name for name in p.fit}
    # longest names first, so "@rm" does not eat the start of "@rm_token"
    subst = sorted(((f"@{n}", str(d)) for n, d in dirs.items()), key=lambda t: -len(t[0]))

    def resolve(args: list[str]) -> list[str]:
        out = []
        for a in args:
            for token, path in subst:  # not inside a longer name: "@sftt" stays, and is refused
                a = re.sub(re.escape(token) + r"(?!\w)", lambda _, d=path: d, a)
            out.append(a)
        return out

    group = [_group_override(job, root)]  # before every user override, so one can replace it
    made = _made_by(p.fit)
    inputs = [f"{key}=@{made[key]}" for key in ("policy", "reward_model") if key in made]
    steps: list[Step] = []
    for name, spec in p.fit.items():
        recipe, *own = _split(name, spec)
        args = _merge(
            [f"recipe={recipe}"], group, list(p.fit_overrides), own, [f"run_dir={dirs[name]}"]
        )
        if dirs[name].exists() and not fit_complete(dirs[name]):
            args.append("resume=true")
        steps.append(Step(name, "fit", resolve(args), dirs[name]))
    if p.predict and not p.predict_recipe:
        raise ConfigError(
            "pipeline.predict needs pipeline.predict_recipe: set it to the predict recipe each step "
            "starts from (e.g. pipeline.predict_recipe=tiny_args)"
        )
    for name, overrides in p.predict.items():
        run_dir = root / "predict" / name
        args = _merge(
            [f"recipe={p.predict_recipe}"],
            group,
            inputs,
            list(p.predict_overrides),
            _split(f"predict {name}", overrides),
            [f"run_dir={run_dir}"],
        )
        steps.append(Step(f"predict {name}", "predict", resolve(args), run_dir))
    if p.evaluate:
        reward = [f"reward_model=@{made['reward_model']}"] if "reward_model" in made else []
        args = _merge(
            [f"recipe={p.evaluate}"],
            group,
            reward,
            [f"outputs=[{root / 'predict'}]"],
            list(p.evaluate_overrides),
            [f"run_dir={root / 'evaluate'}"],
        )
        steps.append(Step("evaluate", "evaluate", resolve(args), root / "evaluate"))
    check_plan(job, steps)
    return steps


def check_steps(steps: list[Step]) -> None:
    """Compose every step's configuration (each setting of a sweep) before the first step runs.

    A typo in a step's recipe, key or value then fails at once, naming the step, rather than
    after the stages before it have trained. Raises `ConfigError`.
    """
    from argsfw.cli import entry_of_stage, no_stage_message, normalise_list_overrides
    from argsfw.config.compose import compose, expand_sweep

    for step in steps:
        multirun = any(a in ("-m", "--multirun") for a in step.args)
        args = [a for a in step.args if a not in ("-m", "--multirun", "--verbose")]
        try:
            for overrides in expand_sweep(args) if multirun else [args]:
                sub = compose(normalise_list_overrides(overrides))
                if not sub.stage:
                    raise ConfigError(no_stage_message(sub.recipe))
                if entry_of_stage(sub.stage) != step.entry:
                    raise ConfigError(
                        f"recipe '{sub.recipe}' is a {sub.stage or 'stage-less'} recipe, "
                        f"not a {step.entry} one; name a {step.entry} recipe for this step"
                    )
        except ConfigError as exc:
            raise ConfigError(f"pipeline step '{step.name}': {exc}") from None


def depends_on(step: Step, earlier: list[Step]) -> list[Step]:
    """The earlier steps `step` waits for: the fit steps whose run directories its arguments
    name (``@NAME``), and every step before an evaluate step."""
    if step.entry == "evaluate":
        return list(earlier)
    text = " ".join(step.args)
    return [
        e
        for e in earlier
        if e.entry == "fit" and re.search(rf"{re.escape(str(e.run_dir))}(?![\w.-])", text)
    ]


def _terminate(signum, frame):
    raise Terminated()


def _run_steps(steps: list[Step], jobs: int, root: Path) -> list[str]:
    """Run `steps`, up to `jobs` at once in dependency order; returns the names of the steps
    that failed (after those already running have finished; nothing new starts then).

    A SIGTERM or Ctrl-C of the pipeline is passed on to the running steps as SIGTERM, and the
    pipeline waits for them to stop at their own safe points (predict at a batch's end, fit at
    a step's) before it exits: a step left running alone would still hold its run directory's
    lock when the pipeline is re-run, and its work after the stop would be nobody's.
    """
    import signal

    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _schedule_steps(steps, jobs, root, running)
    except BaseException:
        if running:
            log.warning(
                "stopping: SIGTERM sent to the running steps; waiting for %s to stop at a safe "
                "point (what they did is kept)",
                ", ".join(running),
            )
        for proc, _, _ in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _, out in running.values():
            while True:
                try:
                    proc.wait()
                    break
                except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, kill them
                    proc.kill()
            if out is not None:
                out.close()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _schedule_steps(
    steps: list[Step], jobs: int, root: Path, running: dict[str, tuple]
) -> list[str]:
    import os

    deps = {s.name: depends_on(s, steps[:i]) for i, s in enumerate(steps)}
    index = {s.name: i for i, s in enumerate(steps, 1)}
    done: set[str] = set()
    failed: list[str] = []
    pending = list(steps)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    while pending or running:
        for step in list(pending):
            if failed or len(running) >= jobs:
                break
            if any(d.name not in done for d in deps[step.name]):
                continue
            pending.remove(step)
            tag = f"[{index[step.name]}/{len(steps)}] {step.name}"
            if (step.entry == "fit" and fit_complete(step.run_dir)) or (
                step.entry == "evaluate" and evaluate_current(step, steps[: index[step.name] - 1])
            ):
                log.info("%s: already complete in %s, skipped", tag, step.run_dir)
                done.add(step.name)
                continue
            # evaluate waits for every other step, so it runs alone: it keeps its own threads
            split = jobs > 1 and step.entry != "evaluate"
            command = step.command() + ([f"num_threads={threads}"] if split else [])
            log.info("%s: %s", tag, shlex.join(command[1:]))
            out, launch = None, {}
            if jobs > 1:
                (root / "logs").mkdir(parents=True, exist_ok=True)
                out = (root / "logs" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', step.name)}.log").open(
                    "a"
                )
                # a step writing to a file block-buffers its stdout, where Lightning's progress
                # bar goes: unbuffered, the log shows the step's progress while it runs
                launch = dict(
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            proc = subprocess.Popen(command, **launch)
            running[step.name] = (proc, time.perf_counter(), out)
        if not running:
            if pending and not failed:  # cannot happen: a step waits only for earlier ones
                raise RuntimeError(f"pipeline steps wait for nothing that runs: {pending}")
            break
        time.sleep(0.2 if jobs == 1 else 1.0)
        for name, (proc, started, out) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[name]
            if out is not None:
                out.close()
            tag = f"[{index[name]}/{len(steps)}] {name}"
            if code:
                log.error("%s failed with exit code %d", tag, code)
                failed.append(name)
            else:
                log.info("%s done in %.0f s", tag, time.perf_counter() - started)
                done.add(name)
    return failed


def _run(job: JobConfig, run: RunDir) -> None:
    steps = plan(job, run.path)
    check_steps(steps)
    run.claim(job)  # before the first write: lock, and no other stage's run
    run.start(job, "pipeline")
    log.info("plan: %d steps: %s", len(steps), ", ".join(s.name for s in steps))
    t0 = time.perf_counter()
    try:
        failed = _run_steps(steps, job.pipeline.jobs, run.path)
    except (KeyboardInterrupt, SystemExit):
        run.finish(status="stopped")
        raise
    if failed:
        run.finish(status="failed", failed_step=failed[0])
        raise StepFailed(
            f"step '{failed[0]}' failed (see its output above"
            + (f" or in {run.path / 'logs'}" if job.pipeline.jobs > 1 else "")
            + "); fix it and re-run the same command to continue"
        )
    from argsfw.eval.report import report_complete

    report = run.path / "evaluate" / "report.md"
    if report_complete(report.parent):  # a killed evaluate's report is not shown as the result
        print("\n" + report.read_text())
    run.finish(seconds=round(time.perf_counter() - t0, 1), steps=[s.name for s in steps])
    log.info(
        "pipeline finished in %.1f min; everything is in %s",
        (time.perf_counter() - t0) / 60,
        run.path,
    )


def main(argv=None) -> int:
    """Entry point; returns the exit code (2 for usage errors)."""
    return run_entry("pipeline", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
