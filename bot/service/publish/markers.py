"""Hidden markers: how the bot finds its own earlier posts, to edit them instead of posting twice.

Every post ends with ``<!-- provbot:<kind>:<tag> -->``. The tag is an HMAC of what the post is about
(the repo and revision of a finding, the comment a reply answers) under a key only the bot holds:
``bot.marker_key`` when set, else one derived from its Hub token. Nobody else can produce a valid
marker, and the bot accepts one only as a raw HTML comment in a comment it wrote itself; text from
outside is always escaped before it is posted (no raw ``<``), so the bot cannot be made to echo one.

>>> m = Markers(b"secret")
>>> m.finding("org/m", "abc") == m.finding("org/m", "abc") != Markers(b"other").finding("org/m", "abc")
True
>>> carries("text\\n<!-- " + m.finding("org/m", "abc") + " -->", m.finding("org/m", "abc"))
True
>>> carries("&lt;!-- " + m.finding("org/m", "abc") + " --&gt;", m.finding("org/m", "abc"))
False
"""

from __future__ import annotations

import hashlib
import hmac


class Markers:
    """Markers under one key (see the module docs)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_secrets(cls, *secrets: str | None) -> Markers:
        """A key derived from the first secret given (the marker key, else the Hub token); a fixed one
        without any, which only a bot that cannot post anyway (no token) would use."""
        seed = next((s for s in secrets if s), "provbot-unkeyed")
        return cls(hmac.new(b"provbot-markers", seed.encode(), hashlib.sha256).digest())

    def tag(self, kind: str, *parts: str) -> str:
        mac = hmac.new(self._key, "\x1f".join((kind, *parts)).encode(), hashlib.sha256).hexdigest()[:24]
        return f"provbot:{kind}:{mac}"

    def finding(self, repo: str, revision: str) -> str:
        """One public discussion per repo@revision: later findings for it edit the same post."""
        return self.tag("finding", repo, revision)

    def moderation(self, repo: str, revision: str) -> str:
        return self.tag("moderation", repo, revision)

    def github(self, repo: str, revision: str) -> str:
        return self.tag("github", repo, revision)

    def reply(self, comment_id: str, kind: str) -> str:
        return self.tag(f"reply-{kind}", comment_id)


def marker_comment(marker: str) -> str:
    return f"<!-- {marker} -->"


def carries(text: str | None, marker: str) -> bool:
    """Does ``text`` (raw markdown of a post) end with ``marker`` as the bot writes it?"""
    return marker_comment(marker) in (text or "")
