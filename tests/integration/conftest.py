"""Runs shared by several integration tests, each fitted once per session.

`tiny_pipeline` is `make demo` scaled down: its runs serve the pipeline tests (including the
science assertions), the quickstart notebook and the export checks of the fit stages. Under
pytest-xdist every test using it runs on one worker (tests/conftest.py), so it is built once.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from _fit_helpers import REPO, env

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


@dataclass
class PipelineRun:
    run_dir: Path
    first: subprocess.CompletedProcess  # the whole pipeline
    again: subprocess.CompletedProcess  # the same fit steps re-run: each one skipped


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> PipelineRun:
    """`python -m argsfw.pipeline recipe=tiny_pipeline`, scaled down, then re-run.

    The first run starts every step inside one process (`_pipeline_in_one_process.py`: the
    pipeline's own plan, checks and skips; each step's ``main``), which saves the ~8 s of CPU
    each step process spends importing torch, transformers and Lightning: the subject here is
    what the steps make. The re-run is a real ``python -m argsfw.pipeline``; it leaves out the
    predict and evaluate steps: it checks that the pipeline skips finished fit stages (a re-run
    predict is a no-op, tested in test_predict.py), in seconds instead of the minute the no-op
    stages and a second evaluation take. Real step processes: test_plugins.py's pipeline.
    """
    run_dir = tmp_path_factory.mktemp("pipeline") / "demo"
    args = [
        "recipe=tiny_pipeline", f"run_dir={run_dir}",
        f"pipeline.fit_overrides={_list(PIPELINE_FIT)}",
        f"pipeline.predict_overrides={_list(PIPELINE_PREDICT)}",
        "pipeline.evaluate_overrides=['logger.name=none']",
        *(f"pipeline.fit.{name}='{spec}'" for name, spec in PIPELINE_STEPS.items()),
    ]  # fmt: skip
    first = subprocess.run(
        [sys.executable, str(IN_ONE_PROCESS), *args],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    predict_steps = sorted(p.name for p in (run_dir / "predict").iterdir())
    fit_only = [*args, *(f"~pipeline.predict.{n}" for n in predict_steps), "pipeline.evaluate=null"]
    again = subprocess.run(
        [sys.executable, "-m", "argsfw.pipeline", *fit_only],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    return PipelineRun(run_dir, first, again)
