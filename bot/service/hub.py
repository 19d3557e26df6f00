"""Hub calls for the bot, with retries: 429 (honouring RateLimit headers), 5xx and timeouts back off.

Reads are retried here. Posts are not (a timed-out POST may have succeeded): the publisher finds its
earlier post by marker before trying again, and the job queue supplies the retry.

>>> client = HubClient("http://127.0.0.1:9", token=None, retries=0)
>>> client.endpoint
'http://127.0.0.1:9'
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import httpx, parse_ratelimit_headers
from pydantic import SecretStr

from provbot.detectors.errors import AccessDeniedError, NotFoundError, ProvbotError, RemoteError

log = logging.getLogger(__name__)
T = TypeVar("T")


class RateLimited(RemoteError):
    """The Hub answered 429 and kept doing so; ``retry_after`` says how long to wait."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_transient(exc: BaseException) -> bool:
    """True for faults worth retrying: 429, 5xx, timeouts, dropped connections."""
    if isinstance(exc, RemoteError):
        return True
    if isinstance(exc, httpx.TransportError | TimeoutError | ConnectionError):
        return True
    status = _status(exc)
    return status is not None and (status == 429 or status >= 500)


def retry_after(exc: BaseException, attempt: int, base: float, cap: float) -> float:
    """Seconds to wait: the RateLimit reset for 429s, else exponential backoff with jitter."""
    response = getattr(exc, "response", None)
    if response is not None and _status(exc) == 429:
        info = parse_ratelimit_headers(response.headers)
        if info is not None:
            return min(max(float(info.reset_in_seconds), base), cap)
        if (ra := response.headers.get("retry-after", "")).isdigit():
            return min(float(ra), cap)
    return min(base * 2**attempt, cap) * (0.75 + random.random() / 2)


def to_provbot_error(exc: BaseException, what: str) -> ProvbotError:
    """One-line error for a failed Hub call (no URLs with tokens: huggingface_hub never puts them there)."""
    if isinstance(exc, ProvbotError):
        return exc
    status = _status(exc)
    if isinstance(exc, RepositoryNotFoundError | RevisionNotFoundError) or status == 404:
        return NotFoundError(f"{what}: not found on the Hub")
    if status in (401, 403):
        return AccessDeniedError(f"{what}: access denied by the Hub (HTTP {status})")
    if status == 429:
        return RateLimited(f"{what}: rate-limited by the Hub", retry_after(exc, 0, 1.0, 300.0))
    if status is not None:
        return RemoteError(f"{what}: Hub answered HTTP {status}")
    return RemoteError(f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'network fault'}")


class HubClient:
    """The subset of HfApi the bot uses, wrapped with retries and clear errors."""

    def __init__(
        self,
        endpoint: str,
        token: SecretStr | str | None,
        *,
        retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        # token=False: never fall back to a token stored on the machine.
        self.api = HfApi(endpoint=self.endpoint, token=secret or False)
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.retried = 0  # how many retries happened, for metrics

    def _retrying(self, what: str, fn: Callable[[], T], *, retries: int | None = None) -> T:
        limit = self.retries if retries is None else retries
        for attempt in range(limit + 1):
            try:
                return fn()
            except (HfHubHTTPError, httpx.HTTPError, OSError) as exc:
                if not is_transient(exc) or attempt >= limit:
                    raise to_provbot_error(exc, what) from exc
                wait = retry_after(exc, attempt, self.backoff_base, self.backoff_max)
                self.retried += 1
                log.info("%s: %s, retrying in %.1fs", what, to_provbot_error(exc, what), wait)
                self.sleep(wait)
        raise AssertionError("unreachable")

    # -- reads (retried) ----------------------------------------------------------------------
    def walk_models(
        self,
        sort: str,
        expand: list[str],
        stop: Callable[[Any], bool],
        *,
        limit: int | None = None,
    ) -> list[Any]:
        """Models newest-first by ``sort`` until ``stop(model)`` is true (that model excluded).

        A fault mid-walk restarts the walk: pages are lazy, and the caller's cursor only moves
        once the whole walk has succeeded.
        """

        def walk() -> list[Any]:
            out = []
            for model in self.api.list_models(sort=sort, expand=expand, limit=limit):  # type: ignore[arg-type]
                if stop(model):
                    break
                out.append(model)
            return out

        return self._retrying(f"listing models by {sort}", walk)

    def model_info(self, repo: str, revision: str | None = None, expand: Iterable[str] | None = None) -> Any:
        return self._retrying(
            f"model {repo}",
            lambda: self.api.model_info(repo, revision=revision, expand=list(expand) if expand else None),
        )

    def discussions(self, repo: str, *, author: str | None = None) -> list[Any]:
        return self._retrying(
            f"discussions of {repo}", lambda: list(self.api.get_repo_discussions(repo, author=author))
        )

    def org_members(self, org: str) -> set[str]:
        """User names of ``org``'s members (lower case); empty when ``org`` is a user, not an organisation."""

        def members() -> set[str]:
            try:
                return {u.username.lower() for u in self.api.list_organization_members(org) if u.username}
            except HfHubHTTPError as exc:
                if _status(exc) == 404:
                    return set()
                raise

        return self._retrying(f"members of {org}", members)

    def discussion_details(self, repo: str, num: int) -> Any:
        return self._retrying(f"discussion {repo}#{num}", lambda: self.api.get_discussion_details(repo, num))

    # -- writes (not retried here; see module docstring) ---------------------------------------
    def create_discussion(self, repo: str, title: str, body: str) -> Any:
        return self._retrying(
            f"new discussion on {repo}", lambda: self.api.create_discussion(repo, title, description=body), retries=0
        )

    def comment(self, repo: str, num: int, body: str) -> Any:
        return self._retrying(
            f"comment on {repo}#{num}", lambda: self.api.comment_discussion(repo, num, body), retries=0
        )

    def edit_comment(self, repo: str, num: int, comment_id: str, body: str) -> Any:
        # Editing to the same text twice is harmless, so this one may retry.
        return self._retrying(
            f"edit on {repo}#{num}", lambda: self.api.edit_discussion_comment(repo, num, comment_id, body)
        )

    def discussion_url(self, repo: str, num: int) -> str:
        return f"{self.endpoint}/{repo}/discussions/{num}"


def parse_time(value: Any) -> datetime | None:
    """ModelInfo times come as datetimes (or ISO strings from some servers)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
