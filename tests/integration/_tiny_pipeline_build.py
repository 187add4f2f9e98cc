"""``python _tiny_pipeline_build.py ROOT``: the tiny pipeline's runs for the `tiny_pipeline`
fixture, built into ROOT once per test session (conftest.py starts it when collection ends).

`make demo` scaled down (``ROOT/demo``), then re-run. The first run starts every step inside one
process (`_pipeline_in_one_process.py`: the pipeline's own plan, checks and skips; each step's
``main``), which saves the ~8 s of CPU each step process spends importing torch, transformers
and Lightning: the subject here is what the steps make. The re-run is a real
``python -m argsfw.pipeline``; it leaves out the predict and evaluate steps: it checks that the
pipeline skips finished fit stages (a re-run predict is a no-op, tested in test_predict.py), in
seconds instead of the minute the no-op stages and a second evaluation take. Real step
processes: test_plugins.py's pipeline.

Writes ``ROOT/result.json`` last ({"first"|"again": {"returncode", "stdout", "stderr"}}), also
when a run fails, so a waiting fixture reports the failure instead of waiting on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IN_ONE_PROCESS = Path(__file__).parent / "_pipeline_in_one_process.py"
PIPELINE_FIT = ["trainer.enable_progress_bar=false", "logger.name=csv"]  # csv: see test_fit_stages
# The demo's fit steps (its tiny model) with fewer optimizer steps, enough for the science
# assertions in test_pipeline.py to hold (RM accuracy, ARGS/PPO/token-level reward over greedy).
# A half-width model (hidden 64) with these steps was tried: its RM reached only 89% accuracy.
PIPELINE_STEPS = {
    "sft": "tiny_sft trainer.max_steps=100",
    "rm": "tiny_rm trainer.max_steps=40",
    "ppo": "tiny_ppo policy=@sft reward_model=@rm trainer.limit_train_batches=12",
    "dpo": "tiny_dpo policy=@sft trainer.max_steps=30",
    "value": "tiny_value policy=@sft reward_model=@rm trainer.max_steps=20",
    "arm": "tiny_arm policy=@sft trainer.max_steps=30",
    "token_rm": "tiny_token_rm policy=@sft trainer.max_steps=30",
    "token_rm_distill": (
        "tiny_token_rm_distill policy=@sft token_rm.teacher_rm=@rm trainer.max_steps=30"
    ),
}
# Every decode setting of the demo on 32 held-out prompts (the demo: 200 prompts, 32 tokens).
PIPELINE_PREDICT = [
    "data.limit=32",
    "decode.max_new_tokens=16",
    "trainer.enable_progress_bar=false",
    "logger.name=none",
]


def _list(items):
    """A Hydra list override value; elements holding '=' must be quoted."""
    return "[" + ",".join(f"'{i}'" for i in items) + "]"


def _run(command: list[str], timeout: float) -> dict:
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


def build(root: Path) -> dict:
    """Both runs into ``root/demo``; their outcomes (the re-run only if the first succeeded)."""
    run_dir = root / "demo"
    args = [
        "recipe=tiny_pipeline", f"run_dir={run_dir}",
        f"pipeline.fit_overrides={_list(PIPELINE_FIT)}",
        f"pipeline.predict_overrides={_list(PIPELINE_PREDICT)}",
        "pipeline.evaluate_overrides=['logger.name=none']",
        *(f"pipeline.fit.{name}='{spec}'" for name, spec in PIPELINE_STEPS.items()),
    ]  # fmt: skip
    result = {"first": _run([sys.executable, str(IN_ONE_PROCESS), *args], timeout=1800)}
    if result["first"]["returncode"] == 0:
        predict_steps = sorted(p.name for p in (run_dir / "predict").iterdir())
        fit_only = [*args, *(f"~pipeline.predict.{n}" for n in predict_steps)]
        fit_only.append("pipeline.evaluate=null")
        result["again"] = _run([sys.executable, "-m", "argsfw.pipeline", *fit_only], timeout=600)
    return result


if __name__ == "__main__":
    root = Path(sys.argv[1])
    try:
        result = build(root)
    except Exception as exc:  # a timeout, a missing folder: the fixture shows it
        result = {"first": {"returncode": -1, "stdout": "", "stderr": f"build failed: {exc!r}"}}
    tmp = root / f".result.json.{os.getpid()}"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, root / "result.json")
