"""Judge clients: an OpenAI-compatible HTTP endpoint or a local Hugging Face chat model.

Nothing leaves the machine without a key: `api_key_for` refuses a remote endpoint with no key
(a loopback server may need none). `OpenAIChatClient` turns each failure into what the caller
should do: `JudgeTransientError` (retry; 429 / 5xx carry their ``Retry-After``), `JudgeError`
(the setup is wrong: 401 / 403 / other 4xx; exit code 2) or, after ``max_consecutive_failures``
connection failures in a row, `JudgeUnreachableError` (stop the run; exit code 1).
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import os
import socket
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from argsfw.errors import ArgsfwError, UsageError
from argsfw.eval.config import JudgeConfig

log = logging.getLogger("argsfw.eval.judge")


class JudgeError(UsageError):
    """The judge cannot be used as set up (no or bad key, wrong URL or model): exit code 2."""


class JudgeUnreachableError(ArgsfwError):
    """The endpoint stopped answering (refused, timed out) several times in a row: exit code 1.

    Not a usage error: the command is valid and may work once the server is back.
    """


class JudgeClient(Protocol):
    """Anything that answers one chat turn; raises `JudgeTransientError` on retryable failures."""

    def complete(self, system: str, user: str) -> str: ...


class JudgeTransientError(RuntimeError):
    """A failure worth retrying (timeout, connection refused, HTTP 429 or 5xx).

    ``retry_after``: the seconds the server asked to wait (its ``Retry-After`` header), if any.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def is_loopback(url: str) -> bool:
    """True when `url`'s host is this machine: ``localhost``, 127.0.0.0/8 or ``::1``."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def resolve_api_key(cfg: JudgeConfig) -> str | None:
    """The API key from ``cfg.api_key_file`` (a path) or the env var ``cfg.api_key_env``.

    Raises:
        JudgeError: the key file is named but cannot be read.
    """
    if cfg.api_key_file:
        try:
            return Path(cfg.api_key_file).expanduser().read_text(encoding="utf-8").strip() or None
        except OSError as e:
            raise JudgeError(
                f"cannot read judge key file {cfg.api_key_file!r}: {e.strerror}"
            ) from None
    return os.environ.get(cfg.api_key_env) or None


def api_key_for(cfg: JudgeConfig) -> str | None:
    """The key to send to ``cfg.base_url``; None only for a loopback endpoint without one.

    Raises:
        JudgeError: the endpoint is remote and no key is set (so nothing is sent), or the
            key file cannot be read.
    """
    key = resolve_api_key(cfg)
    if key is None and not is_loopback(cfg.base_url):
        where = (
            f"the key file {cfg.api_key_file!r} is empty"
            if cfg.api_key_file
            else f"${cfg.api_key_env} is unset"
        )
        raise JudgeError(
            f"the judge endpoint {cfg.base_url} is remote and {where}: export "
            f"{cfg.api_key_env}=<key> (or set eval.judge.api_key_file=PATH or "
            "eval.judge.api_key_env=NAME), or point eval.judge.base_url at a local server"
        )
    return key


_PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def check_endpoint(cfg: JudgeConfig) -> None:
    """Refuse, at start-up, an endpoint that takes no TCP connection (nothing sent, no key).

    Why: otherwise a dead server is found only when judging starts, after minutes of other
    metrics. A remote host behind a proxy from the environment is not tried (the proxy connects).

    Raises:
        JudgeError: the host does not resolve, refuses the connection or does not answer.
    """
    url = urlsplit(cfg.base_url)
    if not is_loopback(cfg.base_url) and any(os.environ.get(k) for k in _PROXY_ENV):
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=min(cfg.timeout, 10.0)).close()
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise JudgeError(
            f"judge endpoint {cfg.base_url} is unreachable ({reason}); start the server or check "
            "eval.judge.base_url"
        ) from None


class OpenAIChatClient:
    """An OpenAI-compatible chat-completions endpoint over `httpx`.

    Counts connection failures (refused, timed out, reset) in a row; the
    `max_consecutive_failures`-th raises `JudgeUnreachableError` instead of a retry, so a dead
    endpoint ends the run in seconds rather than retrying every prompt. Any HTTP answer resets
    the count.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        temperature: float = 0.7,
        max_tokens: int = 512,
        timeout: float = 60.0,
        max_consecutive_failures: int = 3,
        key_source: str = "eval.judge.api_key_env",
    ):
        """`key_source` names where the key came from, for the message when it is refused."""
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # why: a loopback endpoint must not be sent through an HTTP(S)_PROXY from the environment
        # (httpx does not exempt localhost); remote ones keep the proxy settings.
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout,
            trust_env=not is_loopback(base_url),
        )
        self._httpx, self._key, self._key_source = httpx, api_key, key_source
        self._timeout = timeout
        self.model, self.temperature, self.max_tokens = model, temperature, max_tokens
        self.max_consecutive_failures = max_consecutive_failures
        self.failures = 0  # connection failures in a row

    def complete(self, system: str, user: str) -> str:
        """One chat turn.

        Raises:
            JudgeTransientError: retry (connection failure, HTTP 408, 429 or 5xx).
            JudgeUnreachableError: the endpoint failed to answer too many times in a row.
            JudgeError: the endpoint refused the request (401 / 403 / other 4xx).
        """
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        url = f"{self._client.base_url}chat/completions"
        try:
            resp = self._client.post("/chat/completions", json=body)
        except self._httpx.TransportError as e:
            self.failures += 1
            what = type(e).__name__
            if self.failures >= self.max_consecutive_failures:
                raise JudgeUnreachableError(
                    f"judge endpoint {url} is unreachable: {self.failures} connection failures "
                    f"in a row (last {what}, timeout {self._timeout:g}s); start the server or "
                    "fix eval.judge.base_url"
                ) from None
            raise JudgeTransientError(f"{what} talking to {url}") from None
        self.failures = 0
        code = resp.status_code
        if code in (408, 429) or code >= 500:
            wait = parse_retry_after(resp.headers.get("retry-after"))
            raise JudgeTransientError(f"HTTP {code} from {url}", retry_after=wait)
        if code >= 400:
            text = (resp.text.replace(self._key, "***") if self._key else resp.text)[:200]
            if code not in (401, 403):
                fix = "check eval.judge.base_url and eval.judge.model"
            elif self._key:
                fix = f"the key from {self._key_source} was refused; set a valid one"
            else:
                fix = f"the endpoint wants a key; set one in {self._key_source}"
            raise JudgeError(f"HTTP {code} from {url}: {fix} ({text!r})")
        try:
            return resp.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            return ""  # why: a malformed body is an unparseable reply, retried like one

    def close(self) -> None:
        self._client.close()


class HFChatClient:
    """A local Hugging Face causal LM as the judge, greedy decoding, chat template if it has one."""

    def __init__(self, spec: str, device: str | None = None, max_new_tokens: int = 64):
        from argsfw.models import default_device, load_policy, load_tokenizer

        self.tokenizer = load_tokenizer(spec, "judge tokenizer")
        self.model = load_policy(spec, device=device or default_device())
        self.max_new_tokens = max_new_tokens

    def complete(self, system: str, user: str) -> str:
        """Generate the judge's reply to one system + user turn."""
        import torch

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:  # why: base models have no template; a plain transcript still works
            text = f"{system}\n\n{user}\n\n"
        enc = tok(text, return_tensors="pt").to(self.model.device)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad():
            out = self.model.generate(
                **enc, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad
            )
        return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def make_client(cfg: JudgeConfig, device: str | None = None) -> JudgeClient:
    """Build the client `cfg.kind` names (``openai`` or ``hf``).

    Raises:
        JudgeError: a remote endpoint and no key (see `api_key_for`).
        ValueError: unknown kind.
    """
    if cfg.kind == "openai":
        key = api_key_for(cfg)
        if key is None:
            log.info("judge: no key in $%s; loopback endpoint, no Authorization", cfg.api_key_env)
        return OpenAIChatClient(
            cfg.base_url,
            cfg.model,
            key,
            cfg.temperature,
            cfg.max_tokens,
            cfg.timeout,
            cfg.max_consecutive_failures,
            f"the key file {cfg.api_key_file}" if cfg.api_key_file else f"${cfg.api_key_env}",
        )
    if cfg.kind == "hf":
        return HFChatClient(cfg.model, device, cfg.max_tokens)
    raise ValueError(f"unknown judge kind {cfg.kind!r}; choose 'openai' or 'hf'")
