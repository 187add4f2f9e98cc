"""The main job end to end (scaled down): `python -m argsfw.pipeline recipe=tiny_pipeline`.

SFT -> RM -> PPO -> every decode setting of the demo -> evaluate, as `make demo` runs it but on
a smaller model and fewer prompts; then re-run to check that finished stages are skipped.
Also the README's original-API example on the models the pipeline trained.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from _fit_helpers import REPO, env

FIT = [
    "model.tiny.hidden_size=32",
    "model.tiny.intermediate_size=64",
    "model.tiny.num_heads=2",
    "data.limit=96",
    "optim.batch_size=8",
    "optim.micro_batch_size=8",
    "trainer.max_steps=6",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "logger.name=none",
]
PREDICT = [
    "data.limit=6",
    "decode.max_new_tokens=6",
    "trainer.enable_progress_bar=false",
    "logger.name=none",
]


def _list(items):
    """A Hydra list override value; elements holding '=' must be quoted."""
    return "[" + ",".join(f"'{i}'" for i in items) + "]"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pipeline") / "demo"
    args = [
        sys.executable, "-m", "argsfw.pipeline", "recipe=tiny_pipeline", f"run_dir={run_dir}",
        f"pipeline.fit_overrides={_list(FIT)}", f"pipeline.predict_overrides={_list(PREDICT)}",
        "pipeline.evaluate_overrides=['logger.name=none']",
    ]  # fmt: skip
    first = subprocess.run(args, cwd=REPO, env=env(), capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run(args, cwd=REPO, env=env(), capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    return run_dir, first, again


@pytest.mark.slow
def test_pipeline_runs_every_stage_and_reports_every_method(demo):
    run_dir, first, _ = demo
    for stage in ("sft", "rm", "ppo", "arm", "token_rm", "token_rm_distill"):
        assert (run_dir / stage / "hf" / "config.json").is_file(), stage
    report = json.loads((run_dir / "evaluate" / "report.json").read_text())
    labels = {entry["label"] for entry in report["inputs"]}
    expected = {"greedy", "top-k", "nucleus", "ppo-greedy", "args-stochastic w=1.5 k=10"}
    expected |= {f"best-of-n N={n}" for n in (2, 4, 8)}
    expected |= {f"args-greedy w={w} k=10" for w in ("0.5", "1", "1.5", "2", "3")}
    expected |= {f"args-greedy w=1.5 k={k}" for k in (2, 5)}
    expected |= {f"args-gated w=1.5 k=10 τ={t}" for t in ("0.3", "0.6", "0.9")}
    expected |= {f"genarm-greedy alpha={a}" for a in ("0.5", "1", "2")} | {"genarm alpha=1 T=0.5"}
    expected |= {f"token-rm(distill) w={w} k=10" for w in ("0.5", "1.5", "3")}
    expected |= {"token-rm(bt) w=1.5 k=10"}
    assert labels == expected
    for entry in report["inputs"]:
        m = entry["metrics"]
        assert entry["n_records"] == 6 and entry["complete"] is True
        for key in (
            "reward", "diversity", "coherence", "oracle", "tokens_per_second",
            "compute_tokens_per_token", "seconds_per_token",
        ):  # fmt: skip
            assert isinstance(m.get(key), float), (entry["label"], key, m.get(key))
    for plot in ("reward_vs_weight", "reward_vs_cost", "oracle_vs_cost", "reward_vs_oracle"):
        assert (run_dir / "evaluate" / "plots" / f"{plot}.png").stat().st_size > 1000, plot
    assert "| args-greedy w=1.5 k=10 |" in first.stdout  # the results table is printed
    assert json.loads((run_dir / "meta.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_pipeline_rerun_skips_finished_stages(demo):
    _, _, again = demo
    skipped = re.findall(r"\] (sft|rm|ppo): already complete", again.stderr)
    assert skipped == ["sft", "rm", "ppo"]


@pytest.mark.slow
def test_readme_original_api_example_runs_on_the_trained_models(demo):
    run_dir, _, _ = demo
    readme = (REPO / "README.md").read_text()
    snippet = re.search(r"```python\n(from argsfw import ARGS.*?)```", readme, re.S).group(1)
    snippet = snippet.replace("runs/tiny_pipeline", str(run_dir))
    proc = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Assistant:" in proc.stdout
