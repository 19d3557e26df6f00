"""The events that start jobs: a comment that may mention the bot, and a push to a model repo.

They come from webhooks (web/webhook.py) or from polling (poll/poller.py) and are stored as job payloads.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


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
