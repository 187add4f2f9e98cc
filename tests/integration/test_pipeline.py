"""The main job end to end (scaled down): `python -m argsfw.pipeline recipe=tiny_pipeline`.

SFT -> RM -> PPO -> every decode setting of the demo -> evaluate, as `make demo` runs it but with
shorter fits and fewer prompts (the `tiny_pipeline` fixture in conftest.py); the science the demo
shows, asserted on that run; a re-run skips the finished stages. Also the README's original-API
example on the models the pipeline trained.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from _fit_helpers import REPO, env


@pytest.mark.slow
def test_pipeline_runs_every_stage_and_reports_every_method(tiny_pipeline):
    run_dir, first = tiny_pipeline.run_dir, tiny_pipeline.first
    for stage in ("sft", "rm", "ppo", "dpo", "value", "arm", "token_rm", "token_rm_distill"):
        assert (run_dir / stage / "hf" / "config.json").is_file(), stage
    report = json.loads((run_dir / "evaluate" / "report.json").read_text())
    labels = {entry["label"] for entry in report["inputs"]}
    expected = {
        "greedy",
        "top-k",
        "nucleus",
        "ppo-greedy",
        "dpo-greedy",
        "args-stochastic w=1.5 k=10",
    }
    expected |= {f"best-of-n N={n}" for n in (2, 4, 8)}
    expected |= {f"args-greedy w={w} k=10" for w in ("0.5", "1", "1.5", "2", "3")}
    expected |= {f"args-greedy w=1.5 k={k}" for k in (2, 5)}
    expected |= {f"args-gated w=1.5 k=10 τ={t}" for t in ("0.3", "0.6", "0.9")}
    expected |= {f"genarm-greedy alpha={a}" for a in ("0.5", "1", "2")} | {"genarm alpha=1 T=0.5"}
    expected |= {f"token-rm(distill) w={w} k=10" for w in ("0.5", "1.5", "3")}
    expected |= {"token-rm(bt) w=1.5 k=10", "cd-blockwise K=4 M=4"}
    expected |= {"soft-best-of-n N=8 λ=0.5", "speculative-best-of-n N=8 every=8 drop=0.5"}
    expected |= {f"cards r*=3 H={h}" for h in (3, 1)}
    expected |= {f"treebon N={n} seg=8 c=4" for n in (4, 8)} | {"treebon-rm N=8 seg=8 c=4"}
    assert labels == expected
    for entry in report["inputs"]:
        m = entry["metrics"]
        assert entry["n_records"] == 32 and entry["complete"] is True
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
def test_pipeline_rerun_skips_finished_stages(tiny_pipeline):
    skipped = re.findall(r"\] (\w+): already complete", tiny_pipeline.again.stderr)
    assert skipped == ["sft", "rm", "ppo", "dpo", "value", "arm", "token_rm", "token_rm_distill"]


def _rewards(run_dir) -> dict[str, float]:
    report = json.loads((run_dir / "evaluate" / "report.json").read_text())
    return {entry["label"]: entry["metrics"]["reward"] for entry in report["inputs"]}


@pytest.mark.slow
def test_pipeline_science_on_the_tiny_task(tiny_pipeline):
    """What the demo is for, on the scaled-down run: the RM separates the pairs, and every way of
    using it (ARGS search, PPO, token-level RMs) raises the RM's reward over greedy decoding.

    Rewards are the demo RM's mean over the same 32 held-out prompts for every row.
    """
    run_dir = tiny_pipeline.run_dir
    rm = json.loads((run_dir / "rm" / "metrics.json").read_text())
    assert rm["val/reward_acc"] >= 0.9, rm
    rewards = _rewards(run_dir)
    table = "\n".join(f"{r:+.3f}  {label}" for label, r in sorted(rewards.items()))
    greedy = rewards["greedy"]
    args_greedy = [label for label in rewards if label.startswith("args-greedy ")]
    token_level = [label for label in rewards if label.startswith(("genarm", "token-rm"))]
    assert len(args_greedy) == 7 and len(token_level) == 8
    for label in args_greedy + token_level:
        assert rewards[label] > greedy, f"{label} does not beat greedy:\n{table}"
    # PPO's policy against the SFT policy it started from, both decoded greedily ...
    assert rewards["ppo-greedy"] > greedy, table
    # ... and on PPO's own validation prompts (its reference is the SFT policy)
    ppo = json.loads((run_dir / "ppo" / "metrics.json").read_text())
    assert ppo["val/reward"] > ppo["val/ref_reward"], ppo
    # DPO, which never saw the RM, learns the same preferences from the pairs: its implicit
    # reward ranks held-out pairs, and its greedy answers score higher with the RM
    dpo = json.loads((run_dir / "dpo" / "metrics.json").read_text())
    assert dpo["val/reward_acc"] > 0.6, dpo
    assert rewards["dpo-greedy"] > greedy, table


@pytest.mark.slow
def test_readme_original_api_example_runs_on_the_trained_models(tiny_pipeline):
    run_dir = tiny_pipeline.run_dir
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
