"""Moderation issues on GitHub (REST API through httpx), one per marker, edited on later updates.

>>> gh = GitHubIssues("https://api.github.com", "org/moderation", token=None)
>>> gh.issues_url
'https://api.github.com/repos/org/moderation/issues'
"""

from __future__ import annotations

from typing import Any

import httpx

from provbot.bot.service.publish.markers import carries
from provbot.detectors.errors import AccessDeniedError, NotFoundError, RemoteError

LABEL = "provbot"


class GitHubIssues:
    def __init__(self, api: str, repo: str, token: str | None, *, timeout: float = 20.0) -> None:
        self.issues_url = f"{api.rstrip('/')}/repos/{repo}/issues"
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(headers=headers, timeout=timeout)

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        try:
            r = self._client.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise RemoteError(f"GitHub {method} issues: {type(exc).__name__}") from None
        if r.status_code == 404:
            raise NotFoundError("GitHub moderation repo not found (or the token cannot see it)")
        if r.status_code in (401, 403) and r.headers.get("x-ratelimit-remaining") != "0":
            raise AccessDeniedError(f"GitHub refused the request (HTTP {r.status_code})")
        if r.status_code >= 400:
            raise RemoteError(
                f"GitHub {method} issues: HTTP {r.status_code}"
            )  # 429/5xx/rate limit: retried by the queue
        return r.json()

    def find(self, marker: str) -> dict[str, Any] | None:
        """The bot's issue carrying ``marker`` (label ``provbot``, any state), or None."""
        page = 1
        while page <= 10:
            items = self._call(
                "GET", self.issues_url, params={"state": "all", "labels": LABEL, "per_page": 100, "page": page}
            )
            for item in items:
                if carries(item.get("body"), marker):
                    return item
            if len(items) < 100:
                return None
            page += 1
        return None

    def create(self, title: str, body: str) -> dict[str, Any]:
        return self._call("POST", self.issues_url, json={"title": title, "body": body, "labels": [LABEL]})

    def edit(self, number: int, body: str) -> dict[str, Any]:
        return self._call("PATCH", f"{self.issues_url}/{number}", json={"body": body})

    def close(self) -> None:
        self._client.close()
