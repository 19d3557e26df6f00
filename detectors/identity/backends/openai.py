"""OpenAI-compatible chat-completions backend (vLLM, TGI, inference providers), over httpx.

Every request has a timeout; timeouts, connection faults, 429 and 5xx are retried with exponential
backoff (honouring ``Retry-After``), up to ``retries`` times; a request budget caps the total number of
HTTP requests of a run. A chat that still fails comes back as ``None`` and is counted, not fatal; 401/403
and 404 stop the run at once with a one-line error. The API key is sent as a Bearer header and never
logged.

>>> chat_url("http://127.0.0.1:8000")
'http://127.0.0.1:8000/v1/chat/completions'
>>> chat_url("https://api.example.com/v1/")
'https://api.example.com/v1/chat/completions'
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from pydantic import SecretStr

from provbot.detectors.errors import AccessDeniedError, NotFoundError
from provbot.detectors.identity.backends.base import BackendInfo, Message
from provbot.detectors.identity.errors import RequestBudgetError
from provbot.detectors.identity.prompts import SamplingSettings

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 30.0


def chat_url(endpoint: str) -> str:
    """The chat-completions URL for a server root or a ``.../v1`` base URL."""
    base = endpoint.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


class OpenAIBackend:
    """Chats sent one request each, a few at a time, to an OpenAI-compatible endpoint."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key: SecretStr | str | None = None,
        timeout_s: float = 60.0,
        retries: int = 3,
        request_budget: int = 2000,
        concurrency: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.url = chat_url(endpoint)
        self.model = model
        self.retries = max(0, retries)
        self.request_budget = request_budget
        self.concurrency = max(1, concurrency)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s), headers=headers, transport=transport, follow_redirects=False
        )
        self._lock = threading.Lock()
        self.requests = 0
        self.failures: list[str] = []

    def info(self) -> BackendInfo:
        return BackendInfo(kind="openai", model=self.model, endpoint=self.endpoint)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def generate(self, conversations: list[list[Message]], sampling: SamplingSettings, seed: int) -> list[str | None]:
        """Answer each chat (``None`` where it failed after retries). Raises on auth/404/budget errors."""
        jobs = [(conv, seed + i) for i, conv in enumerate(conversations)]
        spent: list[RequestBudgetError] = []

        def one(job: tuple[list[Message], int]) -> str | None:
            try:
                return self._one(job[0], sampling, job[1])
            except RequestBudgetError as exc:
                spent.append(exc)
                return None

        if self.concurrency == 1 or len(jobs) == 1:
            out = [one(job) for job in jobs]
        else:
            with ThreadPoolExecutor(self.concurrency) as pool:
                out = list(pool.map(one, jobs))
        if spent:
            raise RequestBudgetError(str(spent[0]), partial=out)
        return out

    def _take_budget(self) -> None:
        with self._lock:
            if self.requests >= self.request_budget:
                raise RequestBudgetError(f"request budget of {self.request_budget} spent on {self.endpoint}")
            self.requests += 1

    def _one(self, messages: list[Message], sampling: SamplingSettings, seed: int) -> str | None:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": seed,
            "stream": False,
            "n": 1,
        }
        last = "no attempt"
        last_retry_after: float | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, last_retry_after))
            last_retry_after = None
            self._take_budget()
            try:
                resp = self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                last = "timeout"
                continue
            except httpx.TransportError as exc:
                last = f"connection error ({type(exc).__name__})"
                continue
            if resp.status_code == 200:
                text = _content(resp)
                if text is None:
                    last = "malformed chat-completions response"
                    break  # a server that answers nonsense will not answer better on retry
                return text
            if resp.status_code in (401, 403):
                raise AccessDeniedError(f"{self.endpoint}: access denied (HTTP {resp.status_code}); check the API key")
            if resp.status_code == 404:
                raise NotFoundError(f"{self.url}: not found (HTTP 404); is this an OpenAI-compatible endpoint?")
            last = f"HTTP {resp.status_code}"
            if resp.status_code not in RETRY_STATUS:
                break
            last_retry_after = _retry_after(resp)
        with self._lock:
            self.failures.append(last)
        log.warning("chat request failed after %d attempt(s): %s", attempt + 1, last)
        return None

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return float(min(retry_after, MAX_RETRY_AFTER_S))
        return float(min(self.backoff_s * (2 ** (attempt - 1)), self.max_backoff_s))


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _content(resp: httpx.Response) -> str | None:
    try:
        data = resp.json()
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return content.strip() if isinstance(content, str) else None


def endpoint_error_summary(failures: list[str]) -> str:
    """``["timeout", "HTTP 503", "timeout"]`` -> ``'timeout x2, HTTP 503 x1'``."""
    counts: dict[str, int] = {}
    for f in failures:
        counts[f] = counts.get(f, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


__all__ = ["OpenAIBackend", "chat_url", "endpoint_error_summary"]
