"""Fixtures for evaluation tests: outputs files in both layouts and a local judge server."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PROMPTS = [
    "\n\nHuman: What is the capital of France?\n\nAssistant:",
    "\n\nHuman: How many legs does a spider have?\n\nAssistant:",
    "\n\nHuman: Tell me a joke.\n\nAssistant:",
]


def write_predict_run(
    run_dir: Path,
    continuations: list[str],
    method: str = "args-greedy",
    weight: float = 1.5,
    topk: int = 10,
    done: bool = True,
) -> Path:
    """A predict run directory: outputs.jsonl, config.yaml, meta.json and (if done) DONE."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "outputs.jsonl").open("w") as f:
        for i, (p, c) in enumerate(zip(PROMPTS, continuations)):
            rec = {
                "id": i,
                "prompt": p,
                "result": c,
                "response": p + c,
                "method": method,
                "weight": weight,
                "topk": topk,
                "mode": "greedy",
                "temperature": 0.7,
                "n_prompt_tokens": 12,
                "n_new_tokens": 8,
                "seconds": 0.5,
                "stats": {
                    "llm_forwards": 8,
                    "rm_forwards": 8 * topk,
                    "peak_memory_bytes": 2**20 * (i + 1),
                },
            }
            f.write(json.dumps(rec) + "\n")
    (run_dir / "config.yaml").write_text(
        f"decode:\n  method: {method}\n  weight: {weight}\n  topk: {topk}\n"
    )
    (run_dir / "meta.json").write_text("{}")
    if done:
        (run_dir / "DONE").write_text("")
    return run_dir


def write_original(path: Path, continuations: list[str], method: str = "greedy") -> Path:
    """The original project's layout: a JSON list of {prompt, response, method}."""
    path.write_text(
        json.dumps(
            [
                {"prompt": p, "response": p + c, "method": method}
                for p, c in zip(PROMPTS, continuations)
            ]
        )
    )
    return path


class JudgeHandler(BaseHTTPRequestHandler):
    """Canned chat completions. Scores: GOOD 8, BAD 3, else 5; Assistant 1 gets +1 (position
    bias). Question text ALWAYS_BROKEN: never parseable; FLAKY: unparseable the first time."""

    requests: list[dict] = []
    seen: dict[str, int] = {}

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["messages"][-1]["content"]
        type(self).requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "user": user}
        )
        n = type(self).seen[user] = type(self).seen.get(user, 0) + 1
        if "SERVER_ERROR" in user and n == 1:
            return self._send(503, {"error": {"message": "overloaded"}})
        if self.headers.get("Authorization") == "Bearer bad-key":
            return self._send(401, {"error": {"message": "invalid key"}})
        answers = re.findall(
            r"answer begins\]\n(.*?)\n\[Assistant \d's answer ends", user, flags=re.S
        )
        score = [8 if "GOOD" in a else 3 if "BAD" in a else 5 for a in answers] or [5, 5]
        if "ALWAYS_BROKEN" in user or ("FLAKY" in user and n == 1):
            content = "I would rather not give numbers."
        else:
            content = f"{min(score[0] + 1, 10)} {score[1]}\nAssistant 1 looks better placed."
        payload = {
            "id": "x",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
        }
        self._send(200, payload)

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def judge_server():
    """A real HTTP server on 127.0.0.1 serving `JudgeHandler`; yields (base_url, handler class)."""
    JudgeHandler.requests, JudgeHandler.seen = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), JudgeHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", JudgeHandler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def make_run(tmp_path):
    """Factory: ``make_run(name, continuations, **setting)`` -> a predict run directory."""
    return lambda name, conts, **kw: write_predict_run(tmp_path / name, conts, **kw)


@pytest.fixture
def make_original(tmp_path):
    """Factory: ``make_original(name, continuations, method)`` -> an original-layout JSON file."""
    return lambda name, conts, method="greedy": write_original(tmp_path / name, conts, method)
