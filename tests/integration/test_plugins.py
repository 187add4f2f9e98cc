"""A decoding method and a fit stage of one's own (examples/plugins), named by import path, run
through fit, predict, evaluate and the pipeline with no edit to argsfw."""

from __future__ import annotations

import json
import subprocess
import sys

from _fit_helpers import REPO, env

PLUGINS = REPO / "examples" / "plugins"


def test_own_stage_and_method_run_through_the_pipeline(tiny_pipeline, tmp_path):
    """The hinge-loss RM stage is fitted, eta-args decodes with it, evaluate reports it; the RM
    it made guides eta-args above greedy."""
    run_dir = tmp_path / "plugins"
    sft = tiny_pipeline.run_dir / "sft"
    args = [
        sys.executable, "-m", "argsfw.pipeline", "recipe=examples/plugins/pipeline.yaml",
        f"run_dir={run_dir}", "~pipeline.fit.sft",
        "pipeline.fit.rm='examples/plugins/hinge_rm.yaml trainer.max_steps=40 logger.name=csv "
        "trainer.enable_progress_bar=false'",
        f"pipeline.predict_overrides=['policy={sft}','data.limit=32','decode.max_new_tokens=16',"
        "'logger.name=none','trainer.enable_progress_bar=false']",
        "pipeline.evaluate_overrides=['logger.name=none']",
    ]  # fmt: skip
    pythonpath = f"{REPO}:{PLUGINS}"
    out = subprocess.run(
        args, cwd=REPO, env=env(PYTHONPATH=pythonpath), capture_output=True, text=True, timeout=1200
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rm = run_dir / "rm"
    meta = json.loads((rm / "meta.json").read_text())
    assert meta["stage"] == "my_plugins:HINGE_RM" and meta["hinge_margin"] == 1.0
    assert (rm / "hf" / "config.json").is_file()
    report = json.loads((run_dir / "evaluate" / "report.json").read_text())
    rows = {e["label"]: e["metrics"] for e in report["inputs"]}
    eta_label, rep_label = "eta-args w=1.5 k=10 eta=0.2", "rep-args w=1.5 k=10 rep=2"
    assert set(rows) == {"greedy", "args-greedy w=1.5 k=10", eta_label, rep_label}
    eta, greedy = rows[eta_label], rows["greedy"]
    assert eta["reward"] > greedy["reward"], rows
    first = json.loads((run_dir / "predict" / "eta_args" / "outputs.jsonl").open().readline())
    assert first["method"] == "eta-args"
    assert first["settings"] == {"weight": 1.5, "topk": 10, "eta": 0.2}  # its knobs, recorded
    entry = next(e for e in report["inputs"] if e["label"] == rep_label)
    assert entry["settings"] == {"weight": 1.5, "topk": 10, "rep_penalty": 2.0}

    # without the plug-in on the path: one line naming the import, exit 2, before any work
    bad = subprocess.run(
        [sys.executable, "-m", "argsfw.predict", "recipe=tiny_args", "decode=my_plugins:ETA_ARGS",
         f"run_dir={tmp_path / 'bad'}"],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "my_plugins" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
