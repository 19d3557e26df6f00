"""A small HTTP client of the console that acts as a moderator's browser would: log in, open a
finding (which claims it), press a decision button. ``provbot demo`` approves through it.

It speaks only to the console's own pages (cookies, the forms' CSRF tokens and versions), so it
takes exactly the path of a moderator's click.
"""

from __future__ import annotations

import re

import httpx

from provbot.detectors.errors import ProvbotError


class ConsoleClientError(ProvbotError):
    """The console refused what the client asked (wrong login, stale decision, missing role)."""


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    if m is None:
        raise ConsoleClientError(f"the console page has no {name} field")
    return m.group(1)


class ConsoleClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base = base_url.rstrip("/") + "/console"
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def login(self, name: str, password: str) -> ConsoleClient:
        page = self.http.get(f"{self.base}/login")
        r = self.http.post(
            f"{self.base}/login", data={"csrf": _field(page.text, "csrf"), "name": name, "password": password}
        )
        if r.status_code != 303:
            raise ConsoleClientError(f"console login as {name} refused ({r.status_code})")
        return self

    def decide(self, finding_id: int, action: str, reason: str = "") -> str:
        """Open the finding (claiming it), then press ``action``; the status page's outcome word."""
        page = self.http.get(f"{self.base}/finding/{finding_id}")
        if page.status_code != 200:
            raise ConsoleClientError(f"finding {finding_id}: console answered {page.status_code}")
        data = {"csrf": _field(page.text, "csrf"), "version": _field(page.text, "version"), "reason": reason}
        r = self.http.post(f"{self.base}/finding/{finding_id}/{action}", data=data)
        if r.status_code != 303:
            m = re.search(r'class="error" role="alert">([^<]*)<', r.text)
            raise ConsoleClientError(m.group(1) if m else f"{action} refused ({r.status_code})")
        return r.headers["location"].rsplit("done=", 1)[-1]
