"""The real HTTP judge client (httpx) against a scripted server on 127.0.0.1: replies, HTTP
errors, Retry-After, timeouts, a closed port, and the key rules. No other address is used."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest
from judge_server import JudgeServer, Reply, closed_port

from argsfw.errors import is_usage_error
from argsfw.eval.config import JudgeConfig
from argsfw.eval.inputs import EvalInput, EvalRecord
from argsfw.eval.judge import (
    JudgeError,
    JudgeUnreachableError,
    OpenAIChatClient,
    ask_scores,
    check_judge,
    is_loopback,
    judge_pair,
    make_client,
    parse_retry_after,
)


def _inp(label: str, pairs: list[tuple[str, str]]) -> EvalInput:
    return EvalInput(label, Path(label), [EvalRecord(p, c) for p, c in pairs])


A = _inp("a", [("q1", " answer of A")])
B = _inp("b", [("q1", " answer of B")])


def _cfg(url: str, **kw) -> JudgeConfig:
    return JudgeConfig(enabled=True, base_url=url, model="judge-1", **kw)


def _gaps(server: JudgeServer) -> list[float]:
    times = [r["time"] for r in server.requests]
    return [b - a for a, b in zip(times, times[1:])]


def test_judged_pair_both_orders_over_http(judge_server):
    url, server = judge_server
    server.script("9 4\nA is better.", "3 8\nThe second one is better.")
    cfg = _cfg(url, temperature=0.0, max_tokens=7)
    res = judge_pair(A, B, make_client(cfg), cfg)
    # A scores 9 (first) + 8 (second), B 4 + 3: a win, and both orders agreed
    assert (res.win, res.tie, res.lose, res.unparsed, res.failed) == (1, 0, 0, 0, 0)
    assert res.details[0]["a_first"] == (9.0, 4.0) and res.details[0]["b_first"] == (3.0, 8.0)
    assert res.summary()["position_consistency"] == 1.0
    first, second = server.requests
    assert first["path"] == second["path"] == "/v1/chat/completions"
    assert first["auth"] is None  # loopback endpoint, no key: no Authorization header
    body = first["body"]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("judge-1", 0.0, 7)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    u1, u2 = first["user"], second["user"]
    assert u1.index("answer of A") < u1.index("answer of B")
    assert u2.index("answer of B") < u2.index("answer of A")


def test_unparseable_replies_retried_then_counted_apart_from_ties(judge_server):
    url, server = judge_server
    # order 1: a malformed body, then a verdict; order 2: three replies without two numbers
    server.script(Reply(raw=b"{not json"), "5 5", "no numbers", "I decline", Reply(raw=b"{}"))
    cfg = _cfg(url, max_retries=2)
    res = judge_pair(A, B, make_client(cfg), cfg)
    assert (res.win, res.tie, res.lose, res.unparsed, res.failed) == (0, 0, 0, 1, 0)
    assert res.details[0]["attempts"] == [2, 3] and res.details[0]["outcome"] == "unparsed"
    assert res.summary()["n_judged"] == 0 and res.summary()["win_or_tie_rate"] is None
    assert len(server.requests) == 5


def test_401_is_one_line_usage_error_without_retry(judge_server):
    url, server = judge_server
    server.script(Reply(status=401, text="Incorrect API key provided:\nsk-bad-key"))
    client = OpenAIChatClient(url, "m", "sk-bad-key", key_source="$MY_KEY")
    with pytest.raises(JudgeError, match=r"HTTP 401 .*the key from \$MY_KEY was refused") as e:
        judge_pair(A, B, client, _cfg(url))
    assert is_usage_error(e.value) and "\n" not in str(e.value)
    assert "Incorrect API key" in str(e.value) and "sk-bad-key" not in str(e.value)
    assert len(server.requests) == 1 and server.requests[0]["auth"] == "Bearer sk-bad-key"


def test_other_4xx_names_url_and_model(judge_server):
    url, server = judge_server
    server.script(Reply(status=404, text="model judge-1 not found"))
    with pytest.raises(
        JudgeError, match="HTTP 404 .*check eval.judge.base_url and eval.judge.model"
    ):
        make_client(_cfg(url)).complete("s", "u")
    assert len(server.requests) == 1


def test_429_waits_for_retry_after(judge_server):
    url, server = judge_server
    server.script(Reply(status=429, retry_after="1"), "8 7")
    got = ask_scores(make_client(_cfg(url)), "q", "x", "y", max_retries=2)
    assert got.scores == (8.0, 7.0) and got.attempts == 2
    (gap,) = _gaps(server)
    assert 0.95 <= gap < 3.0, gap  # the header's second, not the 0.1 s backoff


@pytest.mark.parametrize("status", [503, 408])
def test_retry_after_is_capped(judge_server, status):
    url, server = judge_server
    server.script(Reply(status=status, retry_after="3600"), "8 7")
    got = ask_scores(make_client(_cfg(url)), "q", "x", "y", max_retries=1, max_retry_after=0.3)
    assert got.scores == (8.0, 7.0)
    (gap,) = _gaps(server)
    assert 0.28 <= gap < 2.0, gap


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("soon", None)],
)
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value) == seconds


def test_500_retried_then_counted_as_failed_not_unparsed(judge_server):
    url, server = judge_server
    server.script(Reply(status=500), "6 4")  # order 1 recovers on its retry
    server.script(*[Reply(status=500)] * 3)  # order 2 fails every attempt
    cfg = _cfg(url, max_retries=2)
    res = judge_pair(A, B, make_client(cfg), cfg)
    assert (res.win, res.tie, res.lose, res.unparsed, res.failed) == (0, 0, 0, 0, 1)
    d = res.details[0]
    assert d["outcome"] == "failed" and d["a_first"] == (6.0, 4.0) and d["b_first"] is None
    assert d["attempts"] == [2, 3] and d["errors"][0] is None and "HTTP 500" in d["errors"][1]
    # a 5xx is an answer: it never counts towards the connection-failure stop
    assert len(server.requests) == 5


def test_timeout_is_retried(judge_server):
    url, server = judge_server
    server.script(Reply(delay=5.0), "8 7")
    start = time.monotonic()
    got = ask_scores(make_client(_cfg(url, timeout=0.3)), "q", "x", "y", max_retries=2)
    assert got.scores == (8.0, 7.0) and got.attempts == 2
    assert time.monotonic() - start < 3.0  # the client gave up on the slow reply


def test_failures_must_be_consecutive_to_stop(judge_server):
    url, server = judge_server
    slow = Reply(delay=5.0)
    server.script(slow, slow, "7 7", slow, slow, "6 6")
    cfg = _cfg(url, timeout=0.3, max_consecutive_failures=3, max_retries=3)
    res = judge_pair(A, B, make_client(cfg), cfg)
    assert res.details[0]["attempts"] == [3, 3] and (res.win, res.tie) == (0, 1)


def test_dead_endpoint_stops_after_consecutive_timeouts(judge_server):
    url, server = judge_server
    server.script(*[Reply(delay=5.0)] * 10)
    cfg = _cfg(url, timeout=0.3, max_consecutive_failures=2, max_retries=5)
    start = time.monotonic()
    with pytest.raises(JudgeUnreachableError, match="2 connection failures in a row") as e:
        judge_pair(A, B, make_client(cfg), cfg)
    assert time.monotonic() - start < 4.0
    assert f"{url}/chat/completions" in str(e.value) and not is_usage_error(e.value)
    assert len(server.requests) == 2


def test_closed_port_stops_quickly(caplog):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    cfg = _cfg(url, max_retries=10)  # default max_consecutive_failures=3
    start = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, "argsfw.eval.judge"),
        pytest.raises(
            JudgeUnreachableError, match=r"3 connection failures in a row \(last ConnectError"
        ) as e,
    ):
        judge_pair(A, B, make_client(cfg), cfg)
    assert time.monotonic() - start < 3.0
    assert url in str(e.value) and "\n" not in str(e.value)
    assert sum("ConnectError" in r.message for r in caplog.records) == 2  # then the stop


def test_loopback_requests_bypass_proxy_settings(judge_server, monkeypatch):
    url, server = judge_server
    dead_proxy = f"http://127.0.0.1:{closed_port()}"  # a proxy would refuse: the test would fail
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert make_client(_cfg(url)).complete("s", "u") == "6 5\nAssistant 1 looks better placed."
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://localhost/v1", True),
        ("http://[::1]:9/v1", True),
        ("http://127.3.2.1/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.1/v1", False),
        ("http://localhost.example.com/v1", False),
    ],
)
def test_is_loopback(url, loopback):
    assert is_loopback(url) is loopback


def test_remote_endpoint_without_key_is_refused_before_any_request(monkeypatch, tmp_path):
    monkeypatch.delenv("ARGSFW_TEST_NO_KEY", raising=False)
    cfg = _cfg("https://judge.example.com/v1", api_key_env="ARGSFW_TEST_NO_KEY")
    with pytest.raises(JudgeError, match=r"remote and \$ARGSFW_TEST_NO_KEY is unset: export") as e:
        check_judge(cfg, [A, B])
    assert is_usage_error(e.value)
    with pytest.raises(JudgeError, match="is remote"):
        make_client(cfg)
    (tmp_path / "key").write_text("\n")
    cfg.api_key_file = str(tmp_path / "key")
    with pytest.raises(JudgeError, match="key file .* is empty"):
        check_judge(cfg, [A, B])
    # a loopback server may need no key; a custom client (tests, HF judge) needs none either
    check_judge(_cfg("http://127.0.0.1:9/v1", api_key_env="ARGSFW_TEST_NO_KEY"), [A, B])
    check_judge(_cfg("https://judge.example.com/v1"), [A, B], need_key=False)
    with pytest.raises(JudgeError, match="at least two"):
        check_judge(_cfg("http://127.0.0.1:9/v1"), [A])


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("kind", "gpt", "eval.judge.kind='gpt'"),
        ("base_url", "api.openai.com/v1", "not an http(s) URL"),
        ("max_consecutive_failures", 0, "max_consecutive_failures must be >= 1"),
        ("timeout", 0.0, "timeout must be > 0"),
    ],
)
def test_judge_config_validated(key, value, needle):
    from argsfw.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(needle)):
        JudgeConfig(**{key: value})
