"""Post on the Hub at most once per marker: find the earlier post and edit it instead.

Each post carries a hidden marker (``<!-- provbot:... -->``). Before creating anything the publisher
looks for the marker, first in its own table, then on the Hub itself (the bot's discussions, or the
thread's comments), so a crash between posting and recording never leads to a second post.

In dry-run mode nothing is sent anywhere; the would-be post is only audited.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel

from provbot.bot.db.database import Database
from provbot.bot.db.posts import PostStore, PostView
from provbot.bot.service.audit import AuditLog
from provbot.bot.service.metrics import BotMetrics
from provbot.bot.service.publish.markers import carries
from provbot.detectors.hub import HubClient

log = logging.getLogger(__name__)

Target = Literal["discussion", "moderation", "reply"]


class PostRef(BaseModel):
    """Where a post lives. ``action`` says what this call did."""

    target: Target
    repo: str
    discussion_num: int | None
    comment_id: str | None
    url: str | None
    action: Literal["created", "edited", "unchanged", "dry_run"]


class Publisher:
    def __init__(
        self, hub: HubClient, db: Database, audit: AuditLog, metrics: BotMetrics, *, bot_username: str, dry_run: bool
    ) -> None:
        self.hub = hub
        self.posts = PostStore(db)
        self.audit = audit
        self.metrics = metrics
        self.bot = bot_username
        self.dry_run = dry_run

    # -- lookups ---------------------------------------------------------------------------------
    def _recorded(self, marker: str) -> PostView | None:
        return self.posts.by_marker(marker)

    def _by_bot(self, comment: Any) -> bool:
        return (getattr(comment, "author", "") or "").lower() == self.bot.lower()

    def _find_discussion(self, repo: str, marker: str) -> tuple[int, str, str] | None:
        """(num, first comment id, its text) of the bot's discussion on ``repo`` carrying ``marker``."""
        for disc in self.hub.list_discussions(repo, author=self.bot):
            if (getattr(disc, "author", "") or "").lower() != self.bot.lower():
                continue  # servers that ignore the author filter
            details = self.hub.discussion_details(repo, disc.num)
            for event in details.events:
                if getattr(event, "type", "") == "comment" and self._by_bot(event) and carries(event.content, marker):
                    return disc.num, event.id, event.content
        return None

    def _find_reply(self, repo: str, num: int, marker: str) -> tuple[str, str] | None:
        details = self.hub.discussion_details(repo, num)
        for event in details.events:
            if getattr(event, "type", "") == "comment" and self._by_bot(event) and carries(event.content, marker):
                return event.id, event.content
        return None

    def _record(
        self,
        *,
        marker: str,
        target: Target,
        repo: str,
        num: int | None,
        comment_id: str | None,
        finding_id: int | None,
        approved_by: str | None,
        edited: bool,
    ) -> None:
        url = self.hub.discussion_url(repo, num) if num is not None else None
        self.posts.record(
            marker=marker,
            target=target,
            repo=repo,
            num=num,
            comment_id=comment_id,
            url=url,
            finding_id=finding_id,
            approved_by=approved_by,
            edited=edited,
        )

    # -- posting ---------------------------------------------------------------------------------
    def ensure_discussion(
        self,
        *,
        target: Target,
        repo: str,
        title: str,
        body: str,
        marker: str,
        finding_id: int | None = None,
        approved_by: str | None = None,
    ) -> PostRef:
        """One discussion per marker on ``repo``: created the first time, its opening post edited later."""
        if self.dry_run:
            return self._dry(target, repo, None, marker, finding_id)
        row = self._recorded(marker)
        found: tuple[int, str, str] | None = None
        if row is not None and row.discussion_num is not None and row.comment_id:
            details = self.hub.discussion_details(repo, row.discussion_num)
            current = next((e.content for e in details.events if getattr(e, "id", None) == row.comment_id), None)
            found = (row.discussion_num, row.comment_id, current or "")
        if found is None:
            found = self._find_discussion(repo, marker)
        if found is not None:
            num, comment_id, current = found
            action: Literal["edited", "unchanged"] = "unchanged"
            if current.strip() != body.strip():
                self.hub.edit_comment(repo, num, comment_id, body)
                action = "edited"
            self._record(
                marker=marker,
                target=target,
                repo=repo,
                num=num,
                comment_id=comment_id,
                finding_id=finding_id,
                approved_by=approved_by,
                edited=action == "edited",
            )
            return self._done(target, repo, num, comment_id, action, finding_id, approved_by)
        created = self.hub.create_discussion(repo, title, body)
        first = next((e for e in created.events if getattr(e, "type", "") == "comment"), None)
        comment_id = first.id if first is not None else None
        self._record(
            marker=marker,
            target=target,
            repo=repo,
            num=created.num,
            comment_id=comment_id,
            finding_id=finding_id,
            approved_by=approved_by,
            edited=False,
        )
        return self._done(target, repo, created.num, comment_id, "created", finding_id, approved_by)

    def ensure_reply(
        self,
        *,
        repo: str,
        num: int,
        body: str,
        marker: str,
        finding_id: int | None = None,
        approved_by: str | None = None,
    ) -> PostRef:
        """One comment per marker in discussion ``repo#num``."""
        if self.dry_run:
            return self._dry("reply", repo, num, marker, finding_id)
        found = self._find_reply(repo, num, marker)
        if found is not None:
            comment_id, current = found
            action: Literal["edited", "unchanged"] = "unchanged"
            if current.strip() != body.strip():
                self.hub.edit_comment(repo, num, comment_id, body)
                action = "edited"
            self._record(
                marker=marker,
                target="reply",
                repo=repo,
                num=num,
                comment_id=comment_id,
                finding_id=finding_id,
                approved_by=approved_by,
                edited=action == "edited",
            )
            return self._done("reply", repo, num, comment_id, action, finding_id, approved_by)
        comment = self.hub.comment(repo, num, body)
        self._record(
            marker=marker,
            target="reply",
            repo=repo,
            num=num,
            comment_id=comment.id,
            finding_id=finding_id,
            approved_by=approved_by,
            edited=False,
        )
        return self._done("reply", repo, num, comment.id, "created", finding_id, approved_by)

    def ensure_github_issue(
        self,
        gh: Any,
        *,
        repo_label: str,
        title: str,
        body: str,
        marker: str,
        finding_id: int | None = None,
        approved_by: str | None = None,
    ) -> PostRef:
        """One GitHub issue per marker (``gh``: :class:`~provbot.bot.service.github.GitHubIssues`)."""
        if self.dry_run:
            return self._dry("moderation", repo_label, None, marker, finding_id)
        found = gh.find(marker)
        if found is None:
            issue, action = gh.create(title, body), "created"
        elif (found.get("body") or "").strip() != body.strip():
            issue, action = gh.edit(found["number"], body), "edited"
        else:
            issue, action = found, "unchanged"
        url = issue.get("html_url") or f"{gh.issues_url}/{issue['number']}"
        self.posts.record(
            marker=marker,
            target="moderation",
            repo=repo_label,
            num=issue["number"],
            comment_id=None,
            url=url,
            finding_id=finding_id,
            approved_by=approved_by,
            edited=action == "edited",
        )
        self.metrics.posts.labels(target="github", action=action).inc()
        if action != "unchanged":
            self.audit.record(
                "post",
                actor=self.bot,
                repo=repo_label,
                message=f"{action} GitHub issue {url}",
                data={
                    "target": "github",
                    "url": url,
                    "finding_id": finding_id,
                    "approved_by": approved_by,
                    "action": action,
                },
            )
        return PostRef(
            target="moderation",
            repo=repo_label,
            discussion_num=issue["number"],
            comment_id=None,
            url=url,
            action=action,
        )  # type: ignore[arg-type]

    def _done(
        self,
        target: Target,
        repo: str,
        num: int,
        comment_id: str | None,
        action: Any,
        finding_id: int | None,
        approved_by: str | None,
    ) -> PostRef:
        url = self.hub.discussion_url(repo, num)
        self.metrics.posts.labels(target=target, action=action).inc()
        if action != "unchanged":
            self.audit.record(
                "post",
                actor=self.bot,
                repo=repo,
                message=f"{action} {target} {url}",
                data={
                    "target": target,
                    "url": url,
                    "comment_id": comment_id,
                    "finding_id": finding_id,
                    "approved_by": approved_by,
                    "action": action,
                },
            )
        return PostRef(target=target, repo=repo, discussion_num=num, comment_id=comment_id, url=url, action=action)

    def _dry(self, target: Target, repo: str, num: int | None, marker: str, finding_id: int | None) -> PostRef:
        self.audit.record(
            "post",
            actor=self.bot,
            repo=repo,
            message=f"dry run: would post {target}",
            data={"target": target, "dry_run": True, "finding_id": finding_id, "marker": marker},
        )
        return PostRef(target=target, repo=repo, discussion_num=num, comment_id=None, url=None, action="dry_run")
