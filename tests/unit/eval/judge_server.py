"""A scripted OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1, for judge tests.

`JudgeServer` answers each request with the next scripted `Reply` (text, status code,
``Retry-After``, a delay longer than the client's timeout, or a raw malformed body), then with
its ``default`` responder once the script is used up. It records every request and shuts down
by itself (context manager / fixture); delayed handlers wake up at shutdown.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: the assistant's text with `status`, or `raw` bytes as the body."""

    text: str = "8 7\nA fine answer."
    status: int = 200
    retry_after: str | None = None  # Retry-After header value
    delay: float = 0.0  # seconds before answering (beyond the client's timeout = a timeout)
    raw: bytes | None = None  # sent as is instead of a chat completion (a malformed body)


Responder = Callable[[dict[str, Any]], Reply]


def canned_judge(request: dict[str, Any]) -> Reply:
    """Scores by content: an answer with GOOD 8, BAD 3, else 5; Assistant 1 gets +1 (a position
    bias). Question ALWAYS_BROKEN: never parseable; FLAKY: unparseable the first time it is
    asked; SERVER_ERROR: HTTP 503 the first time; key ``bad-key``: HTTP 401."""
    user, n = request["user"], request["n"]
    if "SERVER_ERROR" in user and n == 1:
        return Reply(status=503, text="overloaded")
    if request["auth"] == "Bearer bad-key":
        return Reply(status=401, text="invalid key")
    if "ALWAYS_BROKEN" in user or ("FLAKY" in user and n == 1):
        return Reply("I would rather not give numbers.")
    answers = re.findall(r"answer begins\]\n(.*?)\n\[Assistant \d's answer ends", user, flags=re.S)
    score = [8 if "GOOD" in a else 3 if "BAD" in a else 5 for a in answers] or [5, 5]
    return Reply(f"{min(score[0] + 1, 10)} {score[1]}\nAssistant 1 looks better placed.")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        reply = self.server.owner._next(self.path, self.headers.get("Authorization"), body)
        if reply.delay and self.server.owner._stop.wait(reply.delay):
            return  # shutting down: the client gave up long ago
        # the client may have timed out and closed the connection
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(reply, body.get("model"))

    def _send(self, reply: Reply, model: str | None) -> None:
        if reply.raw is not None:
            data = reply.raw
        elif reply.status == 200:
            message = {"role": "assistant", "content": reply.text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            data = json.dumps({"object": "chat.completion", "model": model, "choices": [choice]})
        else:
            data = json.dumps({"error": {"message": reply.text}})
        data = data.encode() if isinstance(data, str) else data
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if reply.retry_after is not None:
            self.send_header("Retry-After", reply.retry_after)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping never blocks shutdown
    owner: JudgeServer


class JudgeServer:
    """A chat-completions server on 127.0.0.1 (a free port), serving in a daemon thread.

    ``requests`` holds one dict per request: path, auth (the Authorization header), user (the
    last message), n (how often this user message has been asked), body and time (arrival,
    `time.monotonic`).
    """

    def __init__(self, default: Responder = canned_judge):
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The base URL a client is given (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *replies: Reply | str) -> None:
        """Answer the next requests with these replies (a str is a 200 with that text)."""
        with self._lock:
            self._script.extend(Reply(r) if isinstance(r, str) else r for r in replies)

    def _next(self, path: str, auth: str | None, body: dict[str, Any]) -> Reply:
        user = (body.get("messages") or [{}])[-1].get("content", "")
        with self._lock:
            n = 1 + sum(r["user"] == user for r in self.requests)
            req = {"path": path, "auth": auth, "user": user, "n": n, "body": body}
            self.requests.append({**req, "time": time.monotonic()})
            if path != "/v1/chat/completions":
                return Reply(status=404, text=f"no route {path}")
            scripted = self._script.popleft() if self._script else None
        return scripted or self.default(req)

    def close(self) -> None:
        """Stop serving, wake delayed handlers and release the port."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> JudgeServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
