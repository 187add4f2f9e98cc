"""Pairwise judge against a real HTTP server on 127.0.0.1 (canned chat completions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from argsfw.eval.config import JudgeConfig
from argsfw.eval.inputs import EvalInput, EvalRecord
from argsfw.eval.judge import (
    JudgeError,
    OpenAIChatClient,
    judge_all,
    judge_pair,
    make_client,
    match_prompts,
    parse_scores,
    resolve_api_key,
)
from argsfw.eval.stats import wilson_interval


def _inp(label: str, pairs: list[tuple[str, str]]) -> EvalInput:
    return EvalInput(label, Path(label), [EvalRecord(p, c) for p, c in pairs])


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("8 7\nbecause", (8.0, 7.0)),
        ("  9.5, 3 \n", (9.5, 3.0)),
        ("10 1", (10.0, 1.0)),
        ("8\n7", None),
        ("Assistant 1: 8 Assistant 2: 7", None),
        ("11 3", None),
        ("0 3", None),
        ("", None),
        ("8 7 6", None),
    ],
)
def test_parse_scores(reply, expected):
    assert parse_scores(reply) == expected


def test_wilson_known_values():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_match_by_prompt_not_position():
    a = _inp("a", [("p1", "A1"), ("p2", "A2"), ("p3", "A3")])
    b = _inp("b", [("p3", "B3"), ("p1", "B1"), ("p4", "B4")])
    pairs, mism = match_prompts(a, b)
    assert pairs == [("p1", "A1", "B1"), ("p3", "A3", "B3")]
    assert mism == {"only_in_a": 1, "only_in_b": 1, "duplicates": 0}


def test_both_orders_cancel_position_bias_and_retry(judge_server):
    url, handler = judge_server
    a = _inp(
        "cand",
        [
            ("q GOOD", " GOOD answer"),
            ("q tie", " plain"),
            ("q FLAKY", " BAD one"),
            ("q ALWAYS_BROKEN", " x"),
            ("only a", " y"),
        ],
    )
    b = _inp(
        "base",
        [
            ("q tie", " also plain"),
            ("q GOOD", " BAD answer"),
            ("q FLAKY", " GOOD one"),
            ("q ALWAYS_BROKEN", " z"),
        ],
    )
    cfg = JudgeConfig(enabled=True, base_url=url, model="judge-1", max_retries=2, num_prompts=100)
    res = judge_pair(a, b, OpenAIChatClient(url, "judge-1", None), cfg)
    # "q GOOD": cand 8 vs 3 -> win; "q tie": 5 vs 5, the +1 to Assistant 1 cancels -> tie;
    # "q FLAKY": first reply malformed, retried, then cand BAD 3 vs GOOD 8 -> lose;
    # "q ALWAYS_BROKEN": 1 + 2 retries per order, then unparsed (not a tie).
    assert (res.win, res.tie, res.lose, res.unparsed) == (1, 1, 1, 1)
    s = res.summary()
    assert s["n_judged"] == 3 and s["win_or_tie_rate"] == pytest.approx(2 / 3)
    assert s["win_or_tie_rate_ci95"] == pytest.approx(wilson_interval(2, 3))
    assert s["mismatches"] == {"only_in_a": 1, "only_in_b": 0, "duplicates": 0}
    by_prompt = {d["prompt"]: d for d in res.details}
    assert by_prompt["q tie"]["a_first"] == (6.0, 5.0) and by_prompt["q tie"]["b_first"] == (
        6.0,
        5.0,
    )
    assert by_prompt["q FLAKY"]["attempts"] == [2, 2]  # each order's first reply was malformed
    assert by_prompt["q ALWAYS_BROKEN"]["attempts"] == [3, 3]
    # both orders really were sent: the candidate's answer appears first and second
    users = [r["user"] for r in handler.requests if "q GOOD" in r["user"]]
    assert len(users) == 2
    assert users[0].index("GOOD answer") < users[0].index("BAD answer")
    assert users[1].index("BAD answer") < users[1].index("GOOD answer")
    assert all(r["path"] == "/v1/chat/completions" for r in handler.requests)
    assert len(handler.requests) == 2 + 2 + 4 + 6


def test_sampling_num_prompts_and_baseline(judge_server):
    url, _ = judge_server
    a = _inp("a", [(f"q{i}", " GOOD") for i in range(5)])
    b = _inp("b", [(f"q{i}", " BAD") for i in range(5)])
    c = _inp("c", [(f"q{i}", " GOOD") for i in range(5)])
    cfg = JudgeConfig(base_url=url, num_prompts=3, baseline="b")
    results = judge_all([a, b, c], cfg, make_client(cfg))
    assert [(r.a, r.b, r.win) for r in results] == [("a", "b", 3), ("c", "b", 3)]
    with pytest.raises(ValueError, match="matches no input"):
        judge_all([a, b], JudgeConfig(baseline="zzz"), make_client(cfg))


def test_key_from_env_or_file_sent_as_bearer(judge_server, monkeypatch, tmp_path):
    url, handler = judge_server
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-env-123")
    cfg = JudgeConfig(base_url=url, api_key_env="MY_JUDGE_KEY")
    assert resolve_api_key(cfg) == "sk-env-123"
    make_client(cfg).complete("s", "[Question]\nq")
    assert handler.requests[-1]["auth"] == "Bearer sk-env-123"
    (tmp_path / "key").write_text("sk-file-456\n")
    assert resolve_api_key(JudgeConfig(api_key_file=str(tmp_path / "key"))) == "sk-file-456"
    with pytest.raises(JudgeError, match="key file"):
        resolve_api_key(JudgeConfig(api_key_file=str(tmp_path / "missing")))


def test_hf_judge_local_model(tiny_kit):
    import torch

    from argsfw.eval.judge import HFChatClient

    client = HFChatClient(str(tiny_kit["policy"]), device="cpu", max_new_tokens=4)
    reply = client.complete("system", "[Question]\nq")
    # a random tiny model without a chat template: the reply is its greedy continuation of the
    # plain transcript (whatever it says, parse_scores decides), decoded here step by step
    tok, model = client.tokenizer, client.model
    assert not getattr(tok, "chat_template", None)
    ids = tok("system\n\n[Question]\nq\n\n", return_tensors="pt")["input_ids"]
    new = []
    with torch.no_grad():
        for _ in range(4):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            new.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    assert new and reply == tok.decode(new, skip_special_tokens=True)
