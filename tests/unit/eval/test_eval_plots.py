"""Cost per generated token, setting labels, the Pareto front and the plots on hand-made tables."""

from __future__ import annotations

import pytest

from argsfw.eval.inputs import EvalRecord, make_label
from argsfw.eval.plots import PLOTS, STYLES, _sweep_lines, family, pareto_front
from argsfw.eval.stats import cost_metrics, record_cost


def test_pareto_front_on_a_hand_made_table():
    #         cost  value
    table = [
        (1.0, 1.0),  # 0 cheapest: on the front
        (2.0, 0.5),  # 1 dominated by 0 (costs more, gets less)
        (3.0, 2.0),  # 2 front
        (3.0, 1.5),  # 3 same cost as 2, less value: dominated
        (10.0, 2.0),  # 4 same value as 2 for more: dominated
        (12.0, 2.5),  # 5 front
        (12.0, 2.5),  # 6 equal to 5: both kept
        (0.5, 0.2),  # 7 cheapest of all: front
    ]
    assert pareto_front(table) == [7, 0, 2, 5, 6]
    assert pareto_front([]) == []


def test_cost_per_generated_token():
    recs = [
        EvalRecord("p", "a", n_new_tokens=4, seconds=0.2,
                   stats={"llm_tokens": 12, "rm_tokens": 40, "rm_scored_steps": 2}),
        EvalRecord("p", "b", n_new_tokens=6, seconds=0.3,
                   stats={"llm_tokens": 14, "rm_tokens": 0, "rm_scored_steps": 0}),
    ]  # fmt: skip
    m = cost_metrics(recs)
    assert m["llm_tokens_per_token"] == pytest.approx(26 / 10)
    assert m["rm_tokens_per_token"] == pytest.approx(40 / 10)
    assert m["compute_tokens_per_token"] == pytest.approx(66 / 10)
    assert m["seconds_per_token"] == pytest.approx(0.05)
    assert m["rm_scored_fraction"] == pytest.approx(0.2)
    one = record_cost(recs[0])
    assert one["compute_tokens_per_token"] == pytest.approx(13.0) and one["rm_scored_steps"] == 2
    old = cost_metrics([EvalRecord("p", "a", n_new_tokens=4, seconds=0.2, stats={})])
    assert old["compute_tokens_per_token"] is None and old["seconds_per_token"] == 0.05


def test_flops_and_re_reads_per_generated_token():
    recs = [
        EvalRecord("p", "a", n_new_tokens=4, seconds=0.2,
                   stats={"llm_tokens": 12, "rm_tokens": 40, "llm_reread": 0, "rm_reread": 4,
                          "llm_flops": 1.2e6, "rm_flops": 8e6}),
        EvalRecord("p", "b", n_new_tokens=6, seconds=0.3,
                   stats={"llm_tokens": 14, "rm_tokens": 0, "llm_reread": 2, "rm_reread": 0,
                          "llm_flops": 1.8e6, "rm_flops": 0.0}),
    ]  # fmt: skip
    m = cost_metrics(recs)
    assert m["llm_flops_per_token"] == pytest.approx(3e6 / 10)
    assert m["rm_flops_per_token"] == pytest.approx(8e6 / 10)
    assert m["flops_per_token"] == pytest.approx(11e6 / 10)
    assert m["llm_reread_fraction"] == pytest.approx(2 / 26)
    assert m["rm_reread_fraction"] == pytest.approx(4 / 40)
    assert record_cost(recs[0])["flops_per_token"] == pytest.approx(9.2e6 / 4)
    none = cost_metrics([EvalRecord("p", "a", n_new_tokens=4, seconds=0.2,
                                    stats={"llm_tokens": 5, "rm_tokens": 0, "rm_reread": 0})])  # fmt: skip
    assert none["rm_reread_fraction"] is None and none["flops_per_token"] is None


def test_the_cost_axis_is_flops_unless_asked_or_missing():
    from argsfw.eval.plots import cost_axis
    from argsfw.eval.report import markdown

    a = _entry("greedy", "greedy", 1.0, 0.7, 2.0)
    a["metrics"].update(flops_per_token=2.5e6, rm_reread_fraction=0.031)
    b = _entry("best-of-n N=2", "best-of-n", 1.5, 0.7, 7.0, n=2)
    b["metrics"]["flops_per_token"] = 9e6
    assert cost_axis({"inputs": [a, b]})[0] == "flops_per_token"
    report = {"inputs": [a, b], "config": {"cost_axis": "tokens"}}
    assert cost_axis(report)[0] == "compute_tokens_per_token"
    old = _entry("old", "greedy", 1.0, 0.7, 2.0)  # an output from before FLOPs were counted
    assert cost_axis({"inputs": [a, old]})[0] == "compute_tokens_per_token"
    table = markdown({"inputs": [{**a, "n_records": 1}, {**b, "n_records": 1}]})
    assert "| 2.5M |" in table and "| 9M |" in table and "| 3.1% |" in table


def test_setting_labels():
    """Each method's label, read through the registry from a record's knobs; knobs a method does
    not read never reach its label."""

    def label(**kw):
        return make_label(kw, "fallback")

    assert label(method="best-of-n", weight=0.0, topk=10, num_samples=8) == "best-of-n N=8"
    assert (
        label(method="args-greedy", weight=1.5, topk=10, num_samples=4) == "args-greedy w=1.5 k=10"
    )
    assert (
        label(method="args-gated", weight=1.5, topk=10, gate_threshold=0.5)
        == "args-gated w=1.5 k=10 τ=0.5"
    )
    assert label(method="greedy", weight=1.5, topk=10) == "greedy"
    assert label(method="genarm-greedy", alpha=2.0) == "genarm-greedy alpha=2"
    assert label(method="genarm", alpha=1.0, temperature=None) == "genarm alpha=1 T=0.5"
    assert label(method="no-such-method") == "no-such-method"


def _entry(label, method, reward, oracle, cost, weight=None, **kw):
    metrics = {"reward": reward, "reward_se": 0.05, "oracle": oracle, "oracle_se": 0.04,
               "judge_reward": oracle + 0.1, "judge_reward_se": 0.03,
               "compute_tokens_per_token": cost, "diversity": 0.5}  # fmt: skip
    knobs = {"weight": weight, "topk": kw.get("topk"), "num_samples": kw.get("n"),
             "gate_threshold": kw.get("tau")}  # fmt: skip
    settings = {k: v for k, v in knobs.items() if v is not None}
    return {"label": label, "method": method, "settings": settings, "metrics": metrics}


def test_every_plot_is_written_with_one_style_per_family(tmp_path):
    report = {
        "inputs": [
            _entry("greedy", "greedy", 1.0, 0.7, 2.0),
            _entry("ppo-greedy", "greedy", 2.9, 0.5, 2.0),
            _entry("best-of-n N=2", "best-of-n", 1.5, 0.7, 7.0, n=2),
            _entry("best-of-n N=8", "best-of-n", 2.2, 0.8, 25.0, n=8),
            _entry("args-greedy w=0.5 k=10", "args-greedy", 2.0, 1.0, 13.0, 0.5, topk=10),
            _entry("args-greedy w=3 k=10", "args-greedy", 2.9, 0.6, 13.0, 3.0, topk=10),
            _entry(
                "args-gated w=1.5 k=10 τ=0.5", "args-gated", 2.3, 0.9, 5.0, 1.5, topk=10, tau=0.5
            ),  # fmt: skip
        ]
    }
    assert [family(e) for e in report["inputs"]][:3] == ["greedy", "ppo", "best-of-n"]
    assert len(set(STYLES.values())) == len(STYLES)  # distinct colour and marker per family
    for name, fn in PLOTS.items():
        out = fn(report, tmp_path / f"{name}.png")
        assert out is not None and out.read_bytes()[:4] == b"\x89PNG", name
    assert (
        PLOTS["reward_vs_cost"]({"inputs": [_entry("x", "greedy", 1, 1, None)]}, tmp_path / "n.png")
        is None
    )


def test_a_sweep_is_one_line_in_order_of_cost_and_a_lone_point_none():
    class Axes:  # records what would be drawn
        def __init__(self):
            self.lines = []

        def plot(self, xs, ys, **kw):
            self.lines.append((list(xs), list(ys), kw["color"]))

    pts = [
        (_entry("args-greedy w=3 k=10", "args-greedy", 2.9, 0.6, 13.0, 3.0), 13.0, 2.9, 0.05),
        (_entry("greedy", "greedy", 1.0, 0.7, 2.0), 2.0, 1.0, 0.05),
        (_entry("args-greedy w=0.5 k=10", "args-greedy", 2.0, 1.0, 11.0, 0.5), 11.0, 2.0, 0.05),
        (_entry("best-of-n N=8", "best-of-n", 2.2, 0.8, 25.0, n=8), 25.0, 2.2, 0.05),
        (_entry("best-of-n N=2", "best-of-n", 1.5, 0.7, 7.0, n=2), 7.0, 1.5, 0.05),
    ]
    ax = Axes()
    _sweep_lines(ax, pts)
    assert [(xs, ys) for xs, ys, _ in ax.lines] == [
        ([11.0, 13.0], [2.0, 2.9]),
        ([7.0, 25.0], [1.5, 2.2]),
    ]
    assert ax.lines[0][2] == STYLES["args-greedy"][0] and ax.lines[1][2] == STYLES["best-of-n"][0]
