"""Faults across the entry points (issue 19): killed runs, resumes that change limits, records
that vanish, a run dir in use, a run dir of another stage. The runs that are killed, and the holder of a
lock, are subprocesses; the other fits, predicts and evaluations run in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _fit_helpers import REPO, SMALL, env, fit_here, metrics

from argsfw.predict import main as predict


def _fit_args(run: Path, *extra: str) -> list[str]:
    keys = {e.split("=", 1)[0] for e in extra}
    base = [a for a in SMALL if a.split("=", 1)[0] not in keys]
    return ["recipe=tiny_sft", *base, "logger.name=none", f"run_dir={run}", *extra]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def _files(run: Path) -> dict[str, bytes]:
    return {n: (run / n).read_bytes() for n in ("config.yaml", "meta.json", "metrics.json")}


@pytest.mark.slow
def test_raising_max_steps_of_a_finished_fit_trains_on_and_never_reports_no_work(tmp_path):
    # a run stopped by max_steps mid-epoch used to save only an end-of-epoch checkpoint: the
    # resume with max_steps=6 then trained nothing, said "fit done", and wrote metrics.json
    # without train/val losses
    run = tmp_path / "run"
    fit_here(*_fit_args(run, "trainer.max_steps=3"))
    at_3 = metrics(run)
    stale = run / f".hf.tmp-{_dead_pid()}"  # a killed export's folder
    stale.mkdir()
    fit_here(*_fit_args(run, "trainer.max_steps=6", "resume=true"))
    m = metrics(run)
    assert m["trainer/global_step"] == 6 and {"train/loss", "val/loss"} <= set(m), m
    assert m["val/loss"] < at_3["val/loss"]  # steps 4-6 trained (the LR schedule now spans 6)
    assert not stale.exists()

    before = _files(run)
    proc = fit_here(*_fit_args(run, "trainer.max_steps=6", "resume=true"), check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "already finished (step 6)" in lines[-1] and "raise them to continue" in lines[-1]
    assert _files(run) == before  # config, meta (still "completed") and metrics untouched


@pytest.mark.slow
def test_a_killed_fit_resumes_from_its_timed_checkpoint(tmp_path):
    # one epoch of 50 steps (200 pairs, both replies: 400 examples of batch 8), a checkpoint
    # every ~6 ms of training (trainer.checkpoint_every_minutes)
    run = tmp_path / "killed"
    args = _fit_args(
        run, "data.limit=200", "trainer.max_steps=-1", "trainer.checkpoint_every_minutes=0.0001"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "argsfw.fit", *args], cwd=REPO, env=env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    last, deadline = run / "checkpoints" / "last.ckpt", time.monotonic() + 240
    try:
        while not (last.exists() and len(list(last.parent.glob("step*.ckpt"))) == 1):
            assert proc.poll() is None, f"ended before a checkpoint: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.01)
        time.sleep(0.3)  # let the save in flight finish (a torn last.ckpt is another matter)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (run / "metrics.json").exists(), "killed too late: the run had finished"
    (step_ckpt,) = (run / "checkpoints").glob("step*.ckpt")
    assert 0 < int(step_ckpt.stem[4:]) < 50  # saved mid-epoch, not only at the epoch end
    fit_here(*args, "resume=true")
    assert metrics(run)["trainer/global_step"] == 50


def _pargs(kit, run: Path, *extra: str) -> list[str]:
    return [
        "recipe=tiny_args", f"policy={kit['policy']}", f"reward_model={kit['reward_model']}",
        f"run_dir={run}", "data.limit=4", "decode.batch_size=2", "decode.max_new_tokens=4",
        "logger=none", "trainer.enable_progress_bar=false", *extra,
    ]  # fmt: skip


def _last_error(capsys, entry: str) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err and err[-1].startswith(f"argsfw {entry}: error: "), err[-5:]
    assert sum(ln.startswith(f"argsfw {entry}: error") for ln in err) == 1
    return err[-1]


@pytest.fixture(scope="module")
def done_predict(tiny_kit, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("faults") / "predict"
    assert predict(_pargs(tiny_kit, run)) == 0 and (run / "DONE").is_file()
    return run


def test_predict_of_another_data_limit_is_refused_and_loses_nothing(
    tiny_kit, done_predict, tmp_path, capsys
):
    # data.limit was not in the fingerprint: the smaller run reused (and, run at the same time,
    # merged away) the larger one's records while DONE stayed
    import shutil

    run = Path(shutil.copytree(done_predict, tmp_path / "p"))
    before = (run / "outputs.jsonl").read_text()
    assert predict(_pargs(tiny_kit, run, "data.limit=2")) == 2
    assert "data.limit: 4 -> 2" in _last_error(capsys, "predict")
    assert (run / "outputs.jsonl").read_text() == before and (run / "DONE").is_file()


def test_done_is_withdrawn_while_a_run_refills_vanished_records(tiny_kit, done_predict, tmp_path):
    import shutil

    from argsfw.errors import ConfigError
    from argsfw.evaluate import _require_finished

    run = Path(shutil.copytree(done_predict, tmp_path / "p"))
    lines = (run / "outputs.jsonl").read_text().splitlines(keepends=True)
    (run / "outputs.jsonl").write_text(lines[0])  # three records lost; DONE still there
    # this re-run decodes one batch of two, then stops short (as a killed run would)
    assert predict(_pargs(tiny_kit, run, "trainer.limit_predict_batches=1")) == 0
    assert len((run / "outputs.jsonl").read_text().splitlines()) == 3
    assert not (run / "DONE").exists()
    assert json.loads((run / "meta.json").read_text())["status"] == "partial"
    with pytest.raises(ConfigError, match="unfinished predict run"):
        _require_finished(run)


_KILLED_EVALUATE = """
import os, sys
from pathlib import Path
from argsfw.eval import plots
from argsfw.eval.config import EvalConfig
from argsfw.eval.run import run_evaluation

def die(*args, **kwargs):
    os._exit(9)

if sys.argv[3] == "plots":  # killed while writing the plots (report.json and .md written)
    plots.PLOTS.update(dict.fromkeys(plots.PLOTS, die))  # the dict report.py imported
else:  # killed as report.json is about to move in, after every other file has
    replace, last = os.replace, Path(sys.argv[2]) / "report.json"
    os.replace = lambda a, b: die() if Path(b) == last else replace(a, b)
run_evaluation([sys.argv[1]], EvalConfig(metrics=["diversity"], device="cpu"), None, sys.argv[2])
"""


@pytest.mark.slow  # starts processes: make test runs it, make test-fast leaves it out
@pytest.mark.parametrize("when", ["plots", "publish"])
def test_a_killed_evaluate_leaves_no_report_that_looks_finished(done_predict, tmp_path, when):
    """Killed at any point, evaluate leaves no report.json (the previous one is removed at the
    start, as its inputs are no longer the run's); killed before its files move in, none of
    them. The next evaluate in the same folder clears the leftovers and finishes."""
    from argsfw.eval.config import EvalConfig
    from argsfw.eval.report import report_complete
    from argsfw.eval.run import run_evaluation

    out = tmp_path / "eval"
    config = EvalConfig(metrics=["diversity"], device="cpu")
    run_evaluation([str(done_predict)], config, None, out)
    assert report_complete(out) and (out / "plots").is_dir()
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_EVALUATE, str(done_predict), str(out), when], env=env()
    )
    assert proc.returncode == 9
    assert not report_complete(out) and not (out / "DONE").exists()
    assert not (out / "report.json").exists()
    if when == "plots":  # nothing of the report, old or new, in view
        assert not [p.name for p in out.iterdir() if not p.name.startswith(".")]
    assert not list(out.glob(".*.tmp")), "a temporary file of the report was left behind"
    run_evaluation([str(done_predict)], config, None, out)
    assert report_complete(out) and not list(out.glob(".report.tmp-*"))


def test_a_run_dir_in_use_is_refused_in_one_line(done_predict, tmp_path, capsys):
    from argsfw.config.run_dir import LOCK_NAME
    from argsfw.evaluate import main as evaluate

    run = tmp_path / "eval"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from pathlib import Path; "
         "from argsfw.config.run_dir import RunDir; RunDir(Path(sys.argv[1])).lock(); "
         "print('locked', flush=True); time.sleep(120)", str(run)],
        stdout=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip
    args = [f"outputs=[{done_predict}]", f"run_dir={run}", "eval.metrics=[diversity]",
            "eval.device=cpu", "logger=none"]  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert evaluate(args) == 2
        assert f"is in use by argsfw pid {holder.pid}" in _last_error(capsys, "evaluate")
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written
        holder.kill()  # SIGKILL: its lock goes with it
        holder.wait()
        assert evaluate(args) == 0 and (run / "DONE").is_file()
    finally:
        holder.kill()
        holder.wait()


def test_resuming_another_stages_run_leaves_its_files_alone(tmp_path, capsys):
    from argsfw.fit import main as fit_main

    run = tmp_path / "rm_run"
    run.mkdir()
    (run / "config.yaml").write_text("stage: rm\n")
    (run / "meta.json").write_text(json.dumps({"stage": "rm", "recipe": "tiny_rm"}))
    (run / "metrics.json").write_text("{}")
    before = _files(run)
    assert fit_main(["recipe=tiny_sft", "resume=true", f"run_dir={run}", "logger=none"]) == 2
    assert "holds a rm run" in _last_error(capsys, "fit")
    assert _files(run) == before


@pytest.mark.slow
def test_a_sigtermed_predict_stops_at_a_batch_end_with_143_and_resumes(tiny_kit, tmp_path):
    # Lightning's predict loop ignores SIGTERM: a preempted run decoded every remaining batch
    # and exited 0; a killed fit's SIGTERMException (a SystemExit with no code) also exited 0
    run = tmp_path / "term"
    args = _pargs(tiny_kit, run, "data.limit=40", "decode.max_new_tokens=16")
    proc = subprocess.Popen(
        [sys.executable, "-m", "argsfw.predict", *args], cwd=REPO, env=env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    part, deadline = run / "outputs.part-rank0.jsonl", time.monotonic() + 240
    try:
        while not (part.exists() and part.read_text().count("\n") >= 2):
            assert proc.poll() is None, f"ended before a batch: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no batch written within 240 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = part.read_text().splitlines()
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err.strip().splitlines()[-1]
    assert 2 <= len(lines) < 40 and len(lines) % 2 == 0  # whole batches of 2, not all 40
    assert not (run / "DONE").exists()
    assert json.loads((run / "meta.json").read_text())["status"] == "failed"
    assert predict(args) == 0 and (run / "DONE").is_file()
    ids = [json.loads(r)["id"] for r in (run / "outputs.jsonl").read_text().splitlines()]
    assert len(ids) == 40 == len(set(ids))
