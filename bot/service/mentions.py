"""``@provbot scan`` commands: parsing, who may ask, rate limits, and webhook payload checks.

Mentions inside code (fenced, indented or inline), quotes and HTML comments are ignored, so quoting
someone else's request, or documentation showing the syntax, triggers nothing.

>>> parse_mention("Please @provbot scan against org/a org/b base org/b", "provbot")
MentionCommand(command='scan', against=['org/a', 'org/b'], base='org/b', problems=[])
>>> parse_mention("> @provbot scan", "provbot") is None, parse_mention("`@provbot scan`", "provbot") is None
(True, True)
"""

from __future__ import annotations

import hmac
import re
from datetime import timedelta
from typing import Any, Literal

from huggingface_hub import WebhookPayload
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, select

from provbot.bot.db.models_bot import Mention, utcnow
from provbot.bot.service.database import Database
from provbot.bot.service.reporting import is_repo_id
from provbot.detectors.errors import ProvbotError


class WebhookRejected(ProvbotError):
    """A webhook call was refused (bad secret or malformed payload); ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class MentionCommand(BaseModel):
    """What a mention asks for. ``problems`` lists the parts that could not be understood."""

    command: Literal["scan"]
    against: list[str] = Field(default_factory=list)
    base: str | None = None
    problems: list[str] = Field(default_factory=list)


_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,}).*?(?:^\1?\2[`~]*[ \t]*$|\Z)", re.M | re.S)
_INDENTED = re.compile(r"^(?: {4,}|\t).*$", re.M)
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_QUOTE = re.compile(r"^[ \t]{0,3}>.*$", re.M)
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)


def strip_non_prose(markdown: str) -> str:
    """Remove code blocks, code spans, block quotes and HTML comments from ``markdown``."""
    text = markdown.replace("\r\n", "\n")
    text = _HTML_COMMENT.sub(" ", text)
    text = _FENCE.sub(" ", text)
    text = _INDENTED.sub(" ", text)
    text = _INLINE_CODE.sub(" ", text)
    text = _QUOTE.sub(" ", text)
    return text


def parse_mention(markdown: str, bot_username: str) -> MentionCommand | None:
    """The first ``@<bot> scan ...`` command in the prose of ``markdown``, or None.

    Arguments run to the end of the line: ``against <repo>...`` and ``base <repo>``.
    """
    prose = strip_non_prose(markdown)
    pattern = re.compile(rf"(?<![\w@/.-])@{re.escape(bot_username)}\b[ \t]+scan\b([^\n]*)", re.I)
    match = pattern.search(prose)
    if match is None:
        return None
    cmd = MentionCommand(command="scan")
    section: str | None = None
    for token in match.group(1).split():
        word = token.strip(",;.")  # "org/a, org/b." reads naturally
        low = word.lower()
        if low in ("against", "base"):
            section = low
            continue
        if not word:
            continue
        if section is None:
            continue  # ordinary words after the command ("scan please") are fine
        if not is_repo_id(word):
            cmd.problems.append(f"{word[:80]!r} is not a model id (org/name)")
            continue
        if section == "against":
            if word not in cmd.against:
                cmd.against.append(word)
        elif cmd.base is None:
            cmd.base = word
        else:
            cmd.problems.append("only one base can be given")
    if len(cmd.against) > 8:
        cmd.problems.append("at most 8 models can be compared at once")
    return cmd


# -- who may ask --------------------------------------------------------------------------------

Decision = Literal["accept", "refuse", "silent"]


class MentionDecision(BaseModel):
    decision: Decision
    reason: str = ""


class MentionPolicy:
    """Repo owners for their own repos, moderators for any; rate limits per user and per repo.

    A refused user gets one polite refusal per repo per day; later attempts are ignored silently.
    """

    def __init__(
        self, db: Database, *, bot_username: str, moderators: list[str], per_user_per_day: int, per_repo_per_hour: int
    ) -> None:
        self.db = db
        self.bot_username = bot_username
        self.moderators = {m.lower() for m in moderators}
        self.per_user_per_day = per_user_per_day
        self.per_repo_per_hour = per_repo_per_hour

    def is_authorised(self, author: str, repo: str) -> bool:
        return author.lower() in self.moderators or repo.split("/", 1)[0].lower() == author.lower()

    def decide(self, author: str, repo: str) -> MentionDecision:
        now = utcnow()
        with self.db.session() as s:

            def count(*conds: Any) -> int:
                return s.scalar(select(func.count()).select_from(Mention).where(*conds)) or 0

            refused_before = count(
                Mention.author == author,
                Mention.repo == repo,
                Mention.outcome.in_(["refused", "limited"]),
                Mention.at >= now - timedelta(days=1),
            )
            if not self.is_authorised(author, repo):
                if refused_before:
                    return MentionDecision(decision="silent", reason="already refused")
                return MentionDecision(
                    decision="refuse",
                    reason="only the repo's owners and the bot's moderators can ask me to scan this repo.",
                )
            by_user = count(
                Mention.author == author, Mention.outcome == "accepted", Mention.at >= now - timedelta(days=1)
            )
            by_repo = count(Mention.repo == repo, Mention.outcome == "accepted", Mention.at >= now - timedelta(hours=1))
        if by_user >= self.per_user_per_day or by_repo >= self.per_repo_per_hour:
            if refused_before:
                return MentionDecision(decision="silent", reason="already told about the limit")
            return MentionDecision(
                decision="refuse", reason="too many scans were requested recently; please try again later."
            )
        return MentionDecision(decision="accept")


# -- webhooks -------------------------------------------------------------------------------------


class MentionEvent(BaseModel):
    """A discussion comment that might mention the bot (from a webhook or a discussion poll)."""

    repo: str
    discussion_num: int
    comment_id: str | None = None  # None: the discussion's opening post
    # The webhook's copy of the text, only used to skip comments that cannot be mentions; the job
    # re-reads the comment from the Hub before acting on it.
    content: str | None = Field(None, exclude=True)

    def may_mention(self, bot_username: str) -> bool:
        return self.content is None or f"@{bot_username}".lower() in self.content.lower()


class UploadEvent(BaseModel):
    """New commits on a model repo's main branch (scope ``repo.content``)."""

    repo: str
    revision: str


def check_secret(given: str | None, expected: str | None) -> None:
    """Constant-time comparison of ``X-Webhook-Secret``; refuses when no secret is configured."""
    if not expected:
        raise WebhookRejected("webhook secret not configured", 403)
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookRejected("bad webhook secret", 403)


def parse_webhook(body: bytes) -> MentionEvent | UploadEvent | None:
    """Validate a webhook body; None for events the bot does not act on."""
    if len(body) > 1_000_000:
        raise WebhookRejected("payload too large", 413)
    try:
        payload = WebhookPayload.model_validate_json(body)
    except (ValidationError, ValueError) as exc:
        raise WebhookRejected(f"malformed webhook payload ({type(exc).__name__})", 400) from None
    if (
        payload.event.scope == "repo.content"
        and payload.repo.type == "model"
        and payload.event.action in ("create", "update")
    ):
        if not is_repo_id(payload.repo.name):
            raise WebhookRejected("malformed repo name in webhook payload", 400)
        main = [r.newSha for r in payload.updatedRefs or [] if r.ref == "refs/heads/main" and r.newSha]
        sha = main[0] if main else payload.repo.head_sha
        if not sha or not re.fullmatch(r"[0-9a-f]{7,64}", sha):
            return None
        return UploadEvent(repo=payload.repo.name, revision=sha)
    if payload.event.action != "create" or payload.event.scope not in ("discussion", "discussion.comment"):
        return None
    if payload.repo.type != "model" or payload.discussion is None:
        return None
    if not is_repo_id(payload.repo.name):
        raise WebhookRejected("malformed repo name in webhook payload", 400)
    comment_id = payload.comment.id if payload.comment is not None else None
    if payload.event.scope == "discussion.comment" and comment_id is None:
        raise WebhookRejected("comment event without a comment", 400)
    content = payload.comment.content if payload.comment is not None else None
    return MentionEvent(
        repo=payload.repo.name, discussion_num=payload.discussion.num, comment_id=comment_id, content=content
    )
