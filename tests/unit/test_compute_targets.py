"""benchmarks/compute_targets.py pairs the rows of a report and computes the target ratios."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def ct(benchmark_module):
    return benchmark_module("compute_targets")


def _e(label, method, reward, flops, rm_flops, new=8.0, **knobs):
    metrics = {"reward": reward, "flops_per_token": flops, "rm_flops_per_token": rm_flops,
               "new_tokens_per_prompt": new, "compute_tokens_per_token": flops / 1e6,
               "rm_tokens_per_token": rm_flops / 1e6, "llm_reread_fraction": 0.0,
               "rm_reread_fraction": 0.01}  # fmt: skip
    return {"label": label, "method": method, "metrics": metrics, "settings": knobs}


def test_pairs_and_ratios(ct, tmp_path, capsys):
    report = {
        "inputs": [
            _e("greedy", "greedy", 1.0, 4e6, 0.0),
            _e("best-of-n N=16", "best-of-n", 3.0, 60e6, 40e6, num_samples=16),
            _e("best-of-n N=4", "best-of-n", 2.0, 20e6, 10e6, num_samples=4),
            # keeps 95% of the gain; 30e6 * 10 tokens vs 60e6 * 8 = 62.5% of the FLOPs
            _e(
                "speculative-best-of-n N=16 every=2 drop=0.5",
                "speculative-best-of-n",
                2.9,
                30e6,
                20e6,
                new=10.0,
                num_samples=16,
            ),  # fmt: skip
            _e("args-greedy w=1.5 k=10", "args-greedy", 2.0, 18e6, 14e6, weight=1.5, topk=10),
            _e(
                "args-gated w=1.5 k=10 τ=0.6",
                "args-gated",
                1.96,
                12e6,
                6e6,
                weight=1.5,
                topk=10,
                gate_threshold=0.6,
            ),  # fmt: skip
        ]
    }
    pairs = ct.rows(report)
    spec, gated = pairs
    assert spec["reference"] == "best-of-n N=16"
    assert spec["gain_share"] == pytest.approx(0.95)
    assert spec["cost_share"] == pytest.approx(300 / 480)
    assert spec["per_token_share"] == pytest.approx(0.5) and not spec["met"]  # 62.5% > 40%
    assert gated["reference"] == "args-greedy w=1.5 k=10"
    assert gated["gain_share"] == pytest.approx(0.96)
    assert gated["cost_share"] == pytest.approx(6 / 14) and gated["met"]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert ct.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| 95% |" in out and "| no |" in out and "| yes |" in out
    assert ct.main([str(tmp_path / "missing.json")]) == 2


def test_rows_pair_by_settings_whatever_the_labels(ct):
    """Reports carry each row's knobs in ``settings``: custom labels still pair."""
    report = {
        "inputs": [
            _e("greedy", "greedy", 1.0, 4e6, 0.0),
            _e("bon-a", "best-of-n", 2.0, 20e6, 10e6, num_samples=4),
            _e("bon-b", "best-of-n", 3.0, 60e6, 40e6, num_samples=16),
            _e("spec", "speculative-best-of-n", 2.5, 20e6, 10e6, num_samples=16),
            _e("gated", "args-gated", 2.0, 12e6, 6e6, weight=2.0, topk=10),
            _e("ag-1", "args-greedy", 2.0, 18e6, 14e6, weight=1.5, topk=10),
            _e("ag-2", "args-greedy", 2.0, 18e6, 14e6, weight=2.0, topk=10),
        ]
    }
    assert [(p["row"], p["reference"]) for p in ct.rows(report)] == [
        ("spec", "bon-b"),
        ("gated", "ag-2"),
    ]
