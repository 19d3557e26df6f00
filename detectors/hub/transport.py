"""The one request loop to the Hub: headers, retries, rate-limit waits, capped and validated answers.

Requests go out on huggingface_hub's shared HTTP session (connection reuse, its offline switch,
redirects followed) with its headers (``build_hf_headers``). The token is the one given, never a
token cached on the machine. JSON answers are read up to ``max_answer_bytes``, parsed with a
nesting limit and validated into pydantic models; anything else is a
:class:`~provbot.detectors.errors.BadAnswerError` that names the call.

>>> t = Transport("http://127.0.0.1:9", "hf_secret")
>>> "hf_secret" in repr(t)
False
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import SecretStr, TypeAdapter, ValidationError

from provbot.detectors.errors import ProvbotError
from provbot.detectors.hub.error_map import (
    Call,
    bad_answer,
    describe_status,
    gave_up,
    is_retry_status,
    rate_limit_wait,
    rate_limited,
    transport_fault,
    write_failed,
)
from provbot.detectors.hub.redirects import RedirectCache
from provbot.detectors.hub.retry import HubStats, RateGate, RetryPolicy
from provbot.detectors.hub.windows import RateWindows

if TYPE_CHECKING:
    from huggingface_hub.utils import httpx

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M")

#: Largest JSON answer read (a listing page of 1,000 models with configs is a few MB).
MAX_ANSWER_BYTES = 64 * 2**20
#: Deepest nesting accepted in a JSON answer (model configs nest a few levels; thousands is an attack).
MAX_JSON_DEPTH = 64
#: Answers from a remembered CDN URL meaning "this signature no longer works": resolve again.
STALE_TARGET = frozenset({401, 403, 410})


class _StaleTarget(Exception):
    """A remembered redirect target refused the request (its signature expired): resolve again."""


class Retry(Exception):
    """Raised by a response handler: this answer is unusable, ask again (counts as a fault)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_json_limited(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> object:
    """JSON from bytes with a nesting limit; ValueError saying why when it is not acceptable.

    >>> load_json_limited(b'{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> load_json_limited(b"[" * 100 + b"]" * 100)
    Traceback (most recent call last):
    ValueError: JSON nested deeper than 64 levels
    """
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:  # the C parser's own limit: far past ours
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # not UTF-8, not JSON, or a number too long to convert
        raise ValueError(f"not JSON ({type(exc).__name__})") from None
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:  # iterative: a deep value must not cost us the stack
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth} levels")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return data


class Transport:
    """Sends requests to one Hub endpoint with one token, one retry policy and one rate-limit gate."""

    def __init__(
        self,
        endpoint: str,
        token: SecretStr | str | None = None,
        *,
        policy: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        stats: HubStats | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token = token if isinstance(token, SecretStr) or token is None else SecretStr(token)
        self.policy = policy or RetryPolicy()
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes
        self.stats = stats or HubStats()
        self.gate = RateGate()
        #: The token's rate-limit windows as the Hub's answers report them (read by schedulers).
        self.windows = RateWindows(clock=self.policy.clock)
        #: Signed CDN URLs that files' resolve URLs redirected to (see :meth:`send_file`).
        self.redirects = RedirectCache(clock=self.policy.clock)
        self._headers: dict[str, str] | None = None

    def __repr__(self) -> str:  # the token (also inside the cached headers) never shows
        return f"Transport({self.endpoint!r}, token={'set' if self._token else None})"

    @property
    def has_token(self) -> bool:
        return bool(self._token and self._token.get_secret_value())

    def headers(self) -> dict[str, str]:
        """huggingface_hub's headers (user agent, ...) with this client's token only (built once:
        a scan sends thousands of requests)."""
        if self._headers is None:
            from huggingface_hub.utils import build_hf_headers

            secret = self._token.get_secret_value() if self._token else ""
            # token=False, not None: None would fall back to a token cached on this machine.
            self._headers = build_hf_headers(token=secret or False)
        return dict(self._headers)

    def url(self, path: str) -> str:
        return f"{self.endpoint}/{path.lstrip('/')}"

    # -- the loop ---------------------------------------------------------------------------
    def send(
        self,
        call: Call,
        method: str,
        url: str,
        handle: Callable[[httpx.Response], T],
        *,
        accept: frozenset[int] = frozenset({200}),
        params: Any = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        write: bool = False,
        on_attempt: Callable[[], None] | None = None,
        token: bool = True,
        stale: frozenset[int] = frozenset(),
    ) -> T:
        """Send until an answer in ``accept`` comes and ``handle`` returns; errors as in :mod:`.error_map`.

        ``write=True``: the request changes something on the Hub. It is sent again only after a 429
        (the Hub did not process it); a 5xx or a timeout is reported as "may have been applied".
        ``on_attempt`` is called for every request sent (a caller's own counters). ``token=False``
        sends no Authorization header (a signed CDN URL needs none, and another host must not see it).
        A status in ``stale`` raises :class:`_StaleTarget` (for :meth:`send_file`).
        """
        from huggingface_hub.errors import OfflineModeIsEnabled
        from huggingface_hub.utils import get_session, httpx

        policy = self.policy
        all_headers = {**self.headers(), **(headers or {})}
        if not token:
            all_headers = {k: v for k, v in all_headers.items() if k.lower() != "authorization"}
        faults = limited = 0
        while True:
            self._wait_for_gate(call)
            self.stats.add("requests")
            if on_attempt is not None:
                on_attempt()
            wait_429: float | None = None
            try:
                with get_session().stream(
                    method,
                    url,
                    headers=all_headers,
                    params=params,
                    json=json_body,
                    timeout=self.timeout_s,
                    follow_redirects=True,
                ) as response:
                    status = response.status_code
                    for hop in (*response.history, response):
                        self.windows.note(hop.headers)
                    if response.history:
                        self.stats.add("redirects", len(response.history))
                    if status in stale:
                        raise _StaleTarget(f"HTTP {status}")
                    if status in accept:
                        return handle(response)
                    if status == 429:
                        wait_429 = rate_limit_wait(response.headers)
                        if wait_429 is None:
                            wait_429 = policy.backoff(limited)
                    elif is_retry_status(status):
                        raise Retry(f"HTTP {status}")
                    else:
                        raise describe_status(status, call, self.endpoint, response.headers)
            except ProvbotError:
                raise
            except Retry as retry:
                last = retry.reason
            except (httpx.HTTPError, OfflineModeIsEnabled, OSError) as exc:
                fatal = transport_fault(exc, call, self.endpoint)
                if fatal is not None:
                    raise fatal from None
                last = type(exc).__name__
            if wait_429 is not None:
                limited += 1
                now = policy.clock()
                if wait_429 > policy.max_wait_s:
                    raise rate_limited(call, self.endpoint, wait_429, now) from None
                if limited > policy.max_rate_limited:
                    raise rate_limited(
                        call, self.endpoint, wait_429, now, f", still after {policy.max_rate_limited} waits"
                    ) from None
                self.stats.add("rate_limited")
                self.gate.block_until(now + wait_429)
                log.info("%s: rate limited by %s, waiting %.0f s", call, self.endpoint, wait_429)
                continue
            if write:
                raise write_failed(call, self.endpoint, last)
            if faults >= policy.max_retries:
                raise gave_up(call, self.endpoint, faults + 1, last)
            wait = policy.backoff(faults)
            faults += 1
            self.stats.add("retries")
            log.info("%s: %s, retry %d of %d in %.1f s", call, last, faults, policy.max_retries, wait)
            policy.sleep(wait)

    def send_file(
        self,
        call: Call,
        url: str,
        handle: Callable[[httpx.Response], T],
        *,
        accept: frozenset[int] = frozenset({200}),
        headers: Mapping[str, str] | None = None,
        on_attempt: Callable[[], None] | None = None,
    ) -> T:
        """GET a file's ``resolve`` URL, straight from the CDN URL it last redirected to when that is live.

        Pin ``url`` to a commit: a remembered target serves the bytes the resolve served. The first
        read of a file follows the Hub's redirect and remembers where it led; later reads skip the
        resolve call. A remembered target that refuses (expired signature) is dropped and the file
        resolved again, once. The CDN gets no token.
        """

        def on_cdn() -> None:
            self.stats.add("cdn_requests")
            if on_attempt is not None:
                on_attempt()

        def on_resolve() -> None:
            self.stats.add("resolves")
            if on_attempt is not None:
                on_attempt()

        def remember(response: httpx.Response) -> T:
            if response.history:  # redirected: the final URL serves this file until it expires
                self.redirects.put(url, str(response.url))
            else:
                self.redirects.mark_direct(url)
            return handle(response)

        def resolve() -> T:
            return self.send(call, "GET", url, remember, accept=accept, headers=headers, on_attempt=on_resolve)

        for _ in range(2):  # a target that expired is resolved again, once
            target = self.redirects.get(url)
            if target is None and not self.redirects.is_direct(url):
                # The first read of a file resolves it while the file's other reads wait: a scan
                # starts tens of reads of a shard at once, and each would resolve it otherwise.
                with self.redirects.lock(url):
                    target = self.redirects.get(url)
                    if target is None and not self.redirects.is_direct(url):
                        return resolve()
            if target is None:
                break
            try:
                return self.send(
                    call,
                    "GET",
                    target,
                    handle,
                    accept=accept,
                    headers=headers,
                    on_attempt=on_cdn,
                    token=False,
                    stale=STALE_TARGET,
                )
            except _StaleTarget:
                self.redirects.drop(url, target)
                self.stats.add("cdn_expired")
                log.info("%s: the CDN URL expired, resolving again", call)
        return resolve()

    def _wait_for_gate(self, call: Call) -> None:
        """Hold the request while the Hub's rate-limit window (as last reported) is closed."""
        policy = self.policy
        wait = self.gate.until() - policy.clock()
        if wait <= 0:
            return
        if wait > policy.max_wait_s:
            raise rate_limited(call, self.endpoint, wait, policy.clock())
        policy.sleep(wait)

    # -- JSON ---------------------------------------------------------------------------------
    def read_body(self, response: httpx.Response, call: Call, limit: int | None = None) -> bytes:
        """The whole body, refusing more than ``limit`` (default ``max_answer_bytes``) bytes."""
        cap = self.max_answer_bytes if limit is None else limit
        buf = bytearray()
        for chunk in response.iter_bytes():
            buf += chunk
            if len(buf) > cap:
                raise bad_answer(call, self.endpoint, f"larger than {cap} bytes")
        return bytes(buf)

    @staticmethod
    def read_upto(response: httpx.Response, limit: int) -> bytes:
        """At most ``limit`` bytes of the body; the rest is not read (a server ignoring Range)."""
        buf = bytearray()
        for chunk in response.iter_bytes():
            buf += chunk
            if len(buf) >= limit:
                break
        return bytes(buf[:limit])

    def parse(self, raw: bytes, call: Call, shape: type[M] | TypeAdapter[M]) -> M:
        """Validate a JSON answer into ``shape`` (a pydantic model or TypeAdapter)."""
        try:
            data = load_json_limited(raw)
        except ValueError as exc:
            raise bad_answer(call, self.endpoint, str(exc)) from None
        adapter: TypeAdapter[M] = shape if isinstance(shape, TypeAdapter) else TypeAdapter(shape)
        try:
            return adapter.validate_python(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "answer"
            raise bad_answer(call, self.endpoint, f"wrong shape at {where}: {first['msg']}") from None

    def json(
        self,
        call: Call,
        method: str,
        path: str,
        shape: type[M] | TypeAdapter[M],
        *,
        params: Any = None,
        json_body: Any = None,
        write: bool = False,
    ) -> M:
        """Send a request to ``{endpoint}/{path}`` and validate its JSON answer into ``shape``."""
        return self.send(
            call,
            method,
            self.url(path),
            lambda r: self.parse(self.read_body(r, call), call, shape),
            params=params,
            json_body=json_body,
            write=write,
        )

    def json_page(self, call: Call, url: str, shape: TypeAdapter[M], params: Any = None) -> tuple[M, str | None]:
        """One page of a listing and the URL of the next (``Link: <...>; rel="next"``), on the same host only."""

        def handle(response: httpx.Response) -> tuple[M, str | None]:
            page = self.parse(self.read_body(response, call), call, shape)
            nxt = response.links.get("next", {}).get("url")
            if nxt is not None and not _same_origin(str(response.request.url.join(nxt)), self.endpoint):
                raise bad_answer(call, self.endpoint, f"next page on another host ({nxt[:100]})")
            return page, (str(response.request.url.join(nxt)) if nxt else None)

        return self.send(call, "GET", url, handle, params=params)


def _same_origin(url: str, endpoint: str) -> bool:
    from urllib.parse import urlsplit

    a, b = urlsplit(url), urlsplit(endpoint)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


__all__ = ["MAX_ANSWER_BYTES", "MAX_JSON_DEPTH", "STALE_TARGET", "Retry", "Transport", "load_json_limited"]
