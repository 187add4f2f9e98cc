"""The instruments: the length-by-domain rule, RM accuracy beside it on held-out pairs (read by
the RM's own forward), and gains at equal answer length."""

from __future__ import annotations

import gzip
import json
import random

import pytest
import torch

from argsfw.eval.config import EvalConfig
from argsfw.eval.instruments import length_adjusted_gains, rm_pair_accuracy
from argsfw.eval.run import run_evaluation
from argsfw.rlhf.length_rule import length_directions, length_rule_correct, paired_comparison


def test_length_rule_by_domain_by_hand():
    chosen = [10, 30, 5, 50, 7, 7]
    rejected = [20, 10, 9, 40, 3, 7]
    domains = ["help", "help", "help", "harm", "harm", "harm"]
    # help: chosen longer once, shorter twice -> "shorter wins"; harm: longer twice -> longer
    assert length_directions(chosen, rejected, domains) == {"help": -1, "harm": 1}
    assert length_rule_correct(chosen, rejected, domains) == [1.0, 0.0, 1.0, 1.0, 1.0, 0.5]
    # fixed directions (e.g. fitted on other pairs); an unseen domain counts as "longer wins"
    assert length_rule_correct([3, 3], [1, 1], ["new", "help"], {"help": -1}) == [1.0, 0.0]


def test_paired_comparison_by_hand():
    model = [1.0, 1.0, 0.0, 1.0]
    rule = [1.0, 0.0, 0.0, 0.5]
    r = paired_comparison(model, rule)
    assert r["n"] == 4 and r["acc"] == 0.75 and r["rule_acc"] == pytest.approx(0.375)
    diffs = [0.0, 1.0, 0.0, 0.5]  # mean 0.375, sample var (0.140625*2 + 0.390625 + 0.015625)/3
    var = sum((d - 0.375) ** 2 for d in diffs) / 3
    assert r["diff"] == pytest.approx(0.375) and r["diff_se"] == pytest.approx((var / 4) ** 0.5)
    assert r["z"] == pytest.approx(0.375 / (var / 4) ** 0.5)
    with pytest.raises(ValueError, match="same non-zero number"):
        paired_comparison([1.0], [])


class _Rec:
    def __init__(self, i, cont):
        self.id, self.continuation, self.prompt = i, cont, "p"


class _Inp:
    def __init__(self, label, conts):
        self.label, self.records = label, [_Rec(i, c) for i, c in enumerate(conts)]


def test_gain_at_equal_length_separates_length_from_content():
    rng = random.Random(0)
    n = 60
    base = [" " + "x" * rng.randint(5, 40) for _ in range(n)]
    longer = [b + "y" * rng.randint(0, 30) for b in base]  # answers longer by 0..30 chars
    # judge: 0.1 per extra character, plus a content bonus of 0.7 for "better" only
    score = lambda c, bonus: 0.1 * len(c) + bonus + rng.gauss(0, 0.05)  # noqa: E731
    per = {
        "greedy": {"_judge": [score(c, 0.0) for c in base]},
        "longer": {"_judge": [score(c, 0.0) for c in longer]},
        "better": {"_judge": [score(c, 0.7) for c in longer]},
    }
    inputs = [_Inp("greedy", base), _Inp("longer", longer), _Inp("better", longer)]
    g = length_adjusted_gains(inputs, per, "greedy")
    assert g["greedy"]["gain_of"] == "judge_reward" and "gain" not in g["greedy"]
    assert g["longer"]["gain"] > 1.0  # the plain gain is all length
    assert abs(g["longer"]["gain_equal_length"]) < 3 * g["longer"]["gain_equal_length_se"] + 0.05
    assert g["better"]["gain_equal_length"] == pytest.approx(0.7, abs=0.1)
    assert g["better"]["length_slope"] == pytest.approx(0.1, abs=0.01)
    assert g["longer"]["length"] > g["greedy"]["length"]
    with pytest.raises(ValueError, match="not a row"):
        length_adjusted_gains(inputs, per, "nope")


def _pairs_dir(tmp_path):
    """Two domains in two folders, HH layout: in 'help' the longer reply is chosen."""
    root = tmp_path / "pairs"
    for domain, longer_chosen in (("help", True), ("harm", False)):
        (root / domain).mkdir(parents=True)
        rows = []
        for i in range(12):
            short, long = f" Ok {i}.", f" Sure, here is a long and careful answer number {i}."
            c, r = (long, short) if longer_chosen else (short, long)
            if i % 4 == 0:
                c, r = r, c  # the rule is wrong on a quarter of the pairs
            p = f"\n\nHuman: question {domain} {i}?\n\nAssistant:"
            rows.append({"chosen": p + c, "rejected": p + r})
        with gzip.open(root / domain / "test.jsonl.gz", "wt") as f:
            f.write("\n".join(json.dumps(x) for x in rows) + "\n")
    return root


def test_rm_accuracy_is_the_models_own_read_beside_the_rule(tiny_kit, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from argsfw.data import load_pairs
    from argsfw.data.config import DataConfig

    data = DataConfig(source="hh_rlhf", path=str(_pairs_dir(tmp_path) / "*/*.jsonl.gz"))
    cfg = EvalConfig(device="cpu")
    (r,) = rm_pair_accuracy(data, "test", {"guide": str(tiny_kit["reward_model"])}, cfg)
    assert r["n"] == 24 and r["skipped"] == 0
    assert r["rule_acc"] == pytest.approx(0.75)  # wrong on a quarter, in both domains
    assert set(r["by_domain"]) == {"help", "harm"}
    # the reference: the RM's own forward on each text alone
    tok = AutoTokenizer.from_pretrained(tiny_kit["reward_model"])
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_kit["reward_model"]).eval()
    right = []
    for p in load_pairs(data, "test", tok):
        with torch.no_grad():
            c, rj = (
                rm(**tok(p.prompt + side, return_tensors="pt")).logits[0, 0]
                for side in (p.chosen, p.rejected)
            )
        right.append(float(c > rj))
    assert r["acc"] == pytest.approx(sum(right) / len(right))


def test_report_has_the_instruments_section(tiny_kit, tmp_path, make_run):
    from argsfw.data.config import DataConfig

    outputs = [
        make_run("greedy", [" a", " bb", " ccc"], method="greedy"),
        make_run("args", [" a long one", " bb", " ccc"], method="args-greedy"),
    ]
    data = DataConfig(source="hh_rlhf", path=str(_pairs_dir(tmp_path) / "*/*.jsonl.gz"))
    cfg = EvalConfig(
        metrics=["reward", "instruments"],
        device="cpu",
        judge_reward_model=str(tiny_kit["reward_model"]),
        length_baseline="greedy",
    )
    report = run_evaluation(
        outputs, cfg, tiny_kit["reward_model"], tmp_path / "eval", pairs=(data, "test")
    )
    names = [r["name"] for r in report["instruments"]["rm_accuracy"]]
    assert names == ["guide", "judge"]
    args = report["inputs"][1]["metrics"]
    assert args["answer_length"] > report["inputs"][0]["metrics"]["answer_length"]
    assert "gain_equal_length" in args and args["gain_n"] == 3
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "length-by-domain rule" in md and "| guide (" in md and "gain at equal length" in md
