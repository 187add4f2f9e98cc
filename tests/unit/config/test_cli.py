"""The entry points' contract: one-line errors with exit code 2, help, print_config, run dirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from argsfw.cli import run_entry
from argsfw.config.compose import compose
from argsfw.config.run_dir import REDACTED, RunDir, redact


def _cli(entry, *args, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", f"argsfw.{entry}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["recipe=no_such_recipe"], "unknown recipe 'no_such_recipe'; available recipes:"),
        (
            ["recipe=tiny_sft", "optim.lrr=1"],
            "unknown config key 'optim.lrr'; did you mean optim.lr",
        ),
        (
            ["recipe=tiny_args"],
            "recipe 'tiny_args' is a predict recipe; run it with python -m argsfw.predict",
        ),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args, needle):
    proc = _cli("fit", *args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("argsfw fit: error: ") and needle in lines[-1]
    assert "Traceback" not in proc.stderr


def test_help_lists_recipes():
    proc = _cli("predict", "--help")
    assert proc.returncode == 0 and "tiny_args" in proc.stdout and "-m / --multirun" in proc.stdout


def test_print_config_prints_resolved_yaml_and_writes_nothing(tmp_path):
    proc = _cli(
        "predict",
        "recipe=tiny_args",
        "print_config=true",
        "decode.weight=2.5",
        f"run_dir={tmp_path}/r",
    )
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["decode"]["weight"] == 2.5 and cfg["stage"] == "predict"
    assert not (tmp_path / "r").exists()


def test_sweep_gives_each_setting_its_own_run_dir(tmp_path):
    seen = []
    code = run_entry(
        "predict",
        lambda job, run: seen.append((job.decode.weight, job.decode.topk, run.path)),
        ["-m", "recipe=tiny_args", "decode.weight=0,1", "decode.topk=2,3", f"run_dir={tmp_path}"],
    )
    assert code == 0 and len(seen) == 4
    assert len({p for *_, p in seen}) == 4
    assert (1.0, 3, tmp_path / "decode.weight=1,decode.topk=3") in seen


def test_run_entry_maps_failures_to_exit_codes(capsys):
    def boom(job, run):
        raise RuntimeError("disk full\nsecond line")

    assert run_entry("predict", boom, ["recipe=tiny_args", "run_dir=/tmp/x"]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "argsfw predict: error: disk full (RuntimeError; run with --verbose for the traceback)"
    )


def test_a_terminated_run_exits_143_with_a_resume_hint(capsys, tmp_path):
    from argsfw.errors import Terminated

    def stopped(job, run):
        raise Terminated()

    assert run_entry("pipeline", stopped, ["recipe=tiny_pipeline", f"run_dir={tmp_path}"]) == 143
    assert "stopped by SIGTERM" in capsys.readouterr().err


def test_run_dir_writes_redacted_config_and_meta(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-very-secret-123")
    job = compose(["recipe=tiny_args", f"run_dir={tmp_path}", "policy=sk-test-very-secret-123"])
    run = RunDir(tmp_path)
    run.start(job, "predict")
    run.finish(n=3)
    text = run.config_path.read_text()
    assert "sk-test-very-secret-123" not in text and REDACTED in text
    meta = json.loads(run.meta_path.read_text())
    assert meta["status"] == "completed" and meta["recipe"] == "tiny_args" and meta["n"] == 3
    assert meta["started"] and meta["finished"] and meta["code_version"].startswith("0.1.0")


def test_a_resumed_run_that_completes_drops_the_previous_attempts_error(tmp_path):
    job = compose(["recipe=tiny_args", f"run_dir={tmp_path}"])
    run = RunDir(tmp_path)
    run.start(job, "fit")
    run.finish(status="failed", error="SIGTERMException")
    run.start(job, "fit")  # the resume
    run.finish(status="completed")
    meta = json.loads(run.meta_path.read_text())
    assert meta["status"] == "completed" and "error" not in meta


def test_redact_masks_secret_keys_but_keeps_env_var_names():
    tree = {"judge": {"api_key": "abc", "api_key_env": "OPENAI_API_KEY"}, "max_new_tokens": 5}
    assert redact(tree) == {
        "judge": {"api_key": REDACTED, "api_key_env": "OPENAI_API_KEY"},
        "max_new_tokens": 5,
    }
