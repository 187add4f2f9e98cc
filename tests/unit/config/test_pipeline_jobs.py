"""pipeline.jobs: independent steps run side by side, a step waits for the fits it names, evaluate
waits for everything, and a failure starts nothing new."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from argsfw.pipeline import Step, _run_steps, depends_on


class _Timed(Step):
    """A step whose command sleeps, records its start and end, and exits with `code`."""

    def __init__(self, name, entry, args, run_dir, log: Path, code=0):
        super().__init__(name, entry, args, run_dir)
        self.log, self.code = log, code

    def command(self):
        script = (
            "import sys, time; f = open(sys.argv[1], 'a'); "
            "f.write(f'start {sys.argv[2]} {time.time()}\\n'); f.flush(); time.sleep(0.6); "
            "f.write(f'end {sys.argv[2]} {time.time()}\\n'); sys.exit(int(sys.argv[3]))"
        )
        return [
            sys.executable,
            "-c",
            script,
            str(self.log),
            self.name.replace(" ", "_"),
            str(self.code),
        ]


def _times(log: Path) -> dict[str, float]:
    out = {}
    for line in log.read_text().splitlines():
        what, name, t = line.split()
        out[f"{what} {name}"] = float(t)
    return out


def test_dependencies_follow_the_run_dirs_a_step_names(tmp_path):
    rm = Step("rm", "fit", ["recipe=x"], tmp_path / "rm")
    judge = Step("judge", "fit", ["recipe=y"], tmp_path / "rm_judge")
    distill = Step("distill", "fit", [f"token_rm.teacher_rm={tmp_path / 'rm'}"], tmp_path / "d")
    pred = Step(
        "predict a", "predict", [f"reward_model={tmp_path / 'rm_judge'}/hf"], tmp_path / "p"
    )
    ev = Step("evaluate", "evaluate", ["outputs=[x]"], tmp_path / "e")
    steps = [rm, judge, distill, pred, ev]
    assert depends_on(distill, steps[:2]) == [rm]  # not rm_judge, whose name starts alike
    assert depends_on(pred, steps[:3]) == [judge]
    assert depends_on(judge, steps[:1]) == []
    assert depends_on(ev, steps[:4]) == steps[:4]


def test_two_jobs_overlap_and_respect_dependencies(tmp_path):
    log = tmp_path / "times.log"
    a = _Timed("a", "fit", ["recipe=x"], tmp_path / "a", log)
    b = _Timed("b", "fit", [f"policy={tmp_path / 'a'}"], tmp_path / "b", log)
    c = _Timed("predict c", "predict", ["recipe=p"], tmp_path / "c", log)
    ev = _Timed("evaluate", "evaluate", [], tmp_path / "e", log)
    start = time.time()
    assert _run_steps([a, b, c, ev], 2, tmp_path) == []
    t = _times(log)
    assert t["start b"] >= t["end a"]  # b names a's run dir
    assert t["start predict_c"] < t["end a"]  # c names nothing: it ran beside a
    assert t["start evaluate"] >= max(t["end b"], t["end predict_c"])
    assert (tmp_path / "logs" / "predict_c.log").is_file()  # jobs > 1: output to a log each
    assert time.time() - start < 4 * 0.6 + 2.5  # not one after another (that is 2.4 s of sleep)


def test_a_failed_step_stops_what_depends_on_it(tmp_path):
    log = tmp_path / "times.log"
    a = _Timed("a", "fit", [], tmp_path / "a", log, code=3)
    b = _Timed("b", "fit", [f"policy={tmp_path / 'a'}"], tmp_path / "b", log)
    assert _run_steps([a, b], 1, tmp_path) == ["a"]
    assert "start b" not in _times(log)


class _Printing(Step):
    """A step that prints a line (no flush, as a progress bar's text is) and then reads its own
    log, recording whether the line was already there while it still ran."""

    def __init__(self, name, run_dir, seen: Path, own_log: Path):
        super().__init__(name, "predict", [], run_dir)
        self.seen, self.own_log = seen, own_log

    def command(self):
        script = (
            "import sys; print('half-way'); "
            "open(sys.argv[1], 'w').write(str('half-way' in open(sys.argv[2]).read()))"
        )
        return [sys.executable, "-c", script, str(self.seen), str(self.own_log)]


def test_a_step_logging_to_a_file_shows_its_progress_while_it_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # as in a user's shell
    seen = tmp_path / "seen"
    step = _Printing("predict p", tmp_path / "p", seen, tmp_path / "logs" / "predict_p.log")
    other = _Timed("predict q", "predict", [], tmp_path / "q", tmp_path / "times.log")
    assert _run_steps([step, other], 2, tmp_path) == []
    assert seen.read_text() == "True"  # not held in the step's stdout buffer until it exits


def _finished_study(tmp_path: Path):
    """A fit, a predict sweep of two outputs and an evaluation of both, each as its files."""
    import json
    import os

    fit = Step("rm", "fit", ["recipe=r"], tmp_path / "rm")
    pred = Step("predict p", "predict", ["recipe=p"], tmp_path / "predict" / "p")
    ev = Step("evaluate", "evaluate", ["recipe=e", f"outputs=[{tmp_path / 'predict'}]"],
              tmp_path / "evaluate")  # fmt: skip
    fit.run_dir.mkdir(parents=True)
    (fit.run_dir / "meta.json").write_text("{}")
    for sweep in ("w=1", "w=2"):
        d = pred.run_dir / sweep
        d.mkdir(parents=True)
        (d / "outputs.jsonl").write_text("{}\n")
        (d / "DONE").write_text("")
    ev.run_dir.mkdir()
    for name in ("report.json", "report.md", "DONE"):
        (ev.run_dir / name).write_text("{}")
    command = "python -m argsfw.evaluate " + " ".join(ev.args)
    meta = {"command": command, "status": "completed", "inputs": 2}
    (ev.run_dir / "meta.json").write_text(json.dumps(meta))
    t = time.time()
    for f in tmp_path.rglob("*"):  # outputs an hour old, the report a minute
        if f.is_file():
            os.utime(f, (t - 3600, t - 3600))
    os.utime(ev.run_dir / "DONE", (t - 60, t - 60))
    return fit, pred, ev


def test_an_evaluation_newer_than_all_it_reads_is_current(tmp_path):
    import json

    from argsfw.pipeline import evaluate_current

    fit, pred, ev = _finished_study(tmp_path)
    assert evaluate_current(ev, [fit, pred])
    (pred.run_dir / "w=2" / "outputs.jsonl").touch()  # an output written after the report
    assert not evaluate_current(ev, [fit, pred])

    fit, pred, ev = _finished_study(tmp_path / "refit")
    (fit.run_dir / "meta.json").touch()  # a fit that finished after it (a new reward model)
    assert not evaluate_current(ev, [fit, pred])

    fit, pred, ev = _finished_study(tmp_path / "more")
    (pred.run_dir / "w=3").mkdir()
    (pred.run_dir / "w=3" / "outputs.jsonl").write_text("{}\n")
    import os

    os.utime(pred.run_dir / "w=3" / "outputs.jsonl", (0, 0))  # old, but not one it read
    assert not evaluate_current(ev, [fit, pred])

    fit, pred, ev = _finished_study(tmp_path / "other")
    changed = Step("evaluate", "evaluate", [*ev.args, "eval.metrics=[reward]"], ev.run_dir)
    assert not evaluate_current(changed, [fit, pred])  # another command
    (ev.run_dir / "report.md").unlink()  # a killed evaluation's report is never current
    assert not evaluate_current(ev, [fit, pred])

    fit, pred, ev = _finished_study(tmp_path / "failed")
    meta = json.loads((ev.run_dir / "meta.json").read_text())
    (ev.run_dir / "meta.json").write_text(json.dumps({**meta, "status": "failed"}))
    assert not evaluate_current(ev, [fit, pred])


def test_a_current_evaluation_is_not_run_again(tmp_path):
    fit, pred, ev = _finished_study(tmp_path)
    log = tmp_path / "times.log"
    timed = _Timed("evaluate", "evaluate", ev.args, ev.run_dir, log)
    done = _Timed("predict p", "predict", pred.args, pred.run_dir, log)
    assert _run_steps([done, timed], 1, tmp_path) == []
    assert "start evaluate" not in _times(log) and "start predict_p" in _times(log)


class _Argv(Step):
    """A step that records the arguments the pipeline adds to its command."""

    def __init__(self, name, entry, run_dir, out: Path):
        super().__init__(name, entry, [], run_dir)
        self.out = out

    def command(self):
        script = "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))"
        return [sys.executable, "-c", script, str(self.out)]


def test_side_by_side_steps_split_the_cores_and_the_evaluation_keeps_its_own(tmp_path):
    steps = [
        _Argv("predict a", "predict", tmp_path / "a", tmp_path / "a.args"),
        _Argv("predict b", "predict", tmp_path / "b", tmp_path / "b.args"),
        _Argv("evaluate", "evaluate", tmp_path / "e", tmp_path / "e.args"),
    ]
    assert _run_steps(steps, 2, tmp_path) == []
    assert (tmp_path / "a.args").read_text().startswith("num_threads=")
    assert (tmp_path / "e.args").read_text() == ""  # alone at the end: its recipe's threads


class _Stoppable(Step):
    """A step that marks itself started, then on SIGTERM writes 'stopped' and exits 143."""

    def __init__(self, name, run_dir, marks: Path):
        super().__init__(name, "predict", [], run_dir)
        self.marks = marks

    def command(self):
        script = (
            "import signal, sys, time, pathlib; d = pathlib.Path(sys.argv[1]); n = sys.argv[2]\n"
            "def stop(*_):\n"
            "    time.sleep(0.3); (d / f'{n}.stopped').write_text('1'); sys.exit(143)\n"
            "signal.signal(signal.SIGTERM, stop); (d / f'{n}.started').write_text('1')\n"
            "time.sleep(30)"
        )
        return [sys.executable, "-c", script, str(self.marks), self.name.replace(" ", "_")]


def test_sigterm_of_the_pipeline_stops_its_running_steps_and_waits_for_them(tmp_path):
    import os
    import signal
    import threading

    import pytest

    from argsfw.errors import Terminated

    marks = tmp_path / "marks"
    marks.mkdir()
    steps = [_Stoppable(f"predict {n}", tmp_path / n, marks) for n in ("a", "b", "c")]

    def send_when_started():
        deadline = time.time() + 20
        while time.time() < deadline and len(list(marks.glob("*.started"))) < 2:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=send_when_started, daemon=True).start()
    start = time.time()
    with pytest.raises(Terminated):
        _run_steps(steps, 2, tmp_path)
    assert time.time() - start < 15  # not the steps' 30 s sleep: they were stopped
    # both running steps got the SIGTERM and had finished stopping before the pipeline returned;
    # the third never started
    assert sorted(p.name for p in marks.iterdir()) == [
        "predict_a.started", "predict_a.stopped", "predict_b.started", "predict_b.stopped",
    ]  # fmt: skip
    assert (
        signal.getsignal(signal.SIGTERM) is before
    )  # the handler is the pipeline's only while it runs
