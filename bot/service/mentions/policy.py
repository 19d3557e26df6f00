"""Who may ask the bot for a scan: a repo's owner (the user it belongs to, or a member of the
organisation it belongs to) and the bot's moderators, with rate limits per user and per repo. A
refused user gets one polite refusal per repo per day; later attempts are ignored silently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel

from provbot.bot.db.mentions import MentionStore
from provbot.bot.db.models_bot import utcnow

Decision = Literal["accept", "refuse", "silent"]


Cause = Literal["allowed", "not_allowed", "rate_limited"]


class MentionDecision(BaseModel):
    decision: Decision
    #: Why, for the code (the outcome recorded); ``reason`` is the text for the requester.
    cause: Cause = "allowed"
    reason: str = ""


class MentionPolicy:
    """Repo owners (users, or members of owning organisations) for their own repos, moderators for any;
    rate limits per user and per repo. ``members(namespace)`` gives an organisation's members (empty
    for a user's namespace); answers are kept ``MEMBERS_TTL_S`` seconds.

    A refused user gets one polite refusal per repo per day; later attempts are ignored silently.
    """

    def __init__(
        self,
        store: MentionStore,
        *,
        bot_username: str,
        moderators: list[str],
        per_user_per_day: int,
        per_repo_per_hour: int,
        members: Callable[[str], set[str]] | None = None,
    ) -> None:
        self.store = store
        self.members = members
        self._members_cache: dict[str, tuple[float, set[str]]] = {}
        self._members_lock = threading.Lock()
        self.bot_username = bot_username
        self.moderators = {m.lower() for m in moderators}
        self.per_user_per_day = per_user_per_day
        self.per_repo_per_hour = per_repo_per_hour

    MEMBERS_TTL_S = 600.0

    def is_authorised(self, author: str, repo: str) -> bool:
        namespace, who = repo.split("/", 1)[0].lower(), author.lower()
        if who in self.moderators or namespace == who:
            return True
        return self.members is not None and who in self._members_of(namespace)

    def _members_of(self, namespace: str) -> set[str]:
        now = time.monotonic()
        with self._members_lock:
            cached = self._members_cache.get(namespace)
        if cached is not None and now - cached[0] < self.MEMBERS_TTL_S:
            return cached[1]
        members = self.members(namespace) if self.members is not None else set()
        with self._members_lock:
            self._members_cache[namespace] = (now, members)
        return members

    def decide(self, author: str, repo: str) -> MentionDecision:
        now = utcnow()
        count = self.store.count
        refused_before = count(author=author, repo=repo, outcomes=["refused", "limited"], since=now - timedelta(days=1))
        if not self.is_authorised(author, repo):
            if refused_before:
                return MentionDecision(decision="silent", cause="not_allowed", reason="already refused")
            return MentionDecision(
                decision="refuse",
                cause="not_allowed",
                reason="only the repo's owners (or its organisation's members) and the bot's moderators can ask me to scan this repo.",
            )
        by_user = count(author=author, outcomes=["accepted"], since=now - timedelta(days=1))
        by_repo = count(repo=repo, outcomes=["accepted"], since=now - timedelta(hours=1))
        if by_user >= self.per_user_per_day or by_repo >= self.per_repo_per_hour:
            if refused_before:
                return MentionDecision(decision="silent", cause="rate_limited", reason="already told about the limit")
            return MentionDecision(
                decision="refuse",
                cause="rate_limited",
                reason="too many scans were requested recently; please try again later.",
            )
        return MentionDecision(decision="accept")
