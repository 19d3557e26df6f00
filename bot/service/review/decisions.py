"""Moderator review: list, show, approve and reject findings held before posting.

Approving queues a ``post`` job (the running service posts it, with retries); rejecting records the
reason. Both are audited with the moderator's name.
"""

from __future__ import annotations

from provbot.bot.db.findings import FindingView
from provbot.bot.db.models_bot import FindingStatus, utcnow
from provbot.bot.service.context import BotContext
from provbot.bot.service.mentions.origin import parse_origin
from provbot.bot.service.review.findings import finding_title, render_finding
from provbot.bot.service.scan.identity_check import load_identity
from provbot.detectors.errors import ProvbotError
from provbot.detectors.weights.result import ScanResult

__all__ = ["FindingView", "Review", "ReviewError"]


class ReviewError(ProvbotError):
    """A review command cannot be applied (unknown finding, wrong state, missing reason)."""


class Review:
    def __init__(self, ctx: BotContext) -> None:
        self.ctx = ctx

    def list(self, status: str | None = "pending", limit: int = 100) -> list[FindingView]:
        return self.ctx.findings.list(status, limit)

    def get(self, finding_id: int) -> FindingView:
        f = self.ctx.findings.get(finding_id)
        if f is None:
            raise ReviewError(f"no finding with id {finding_id}")
        return f

    def preview(self, finding_id: int) -> str:
        """The text that would be posted for this finding."""
        f = self.get(finding_id)
        result = ScanResult.model_validate(f.result)
        repo, revision, origin, declared = f.repo, f.revision, f.origin, dict(f.declared)
        identity = load_identity(f.identity)
        mention = parse_origin(origin)
        bot = self.ctx.settings.bot.username
        if mention is None:
            body = render_finding(
                self.ctx.renderer,
                template="finding_discussion.md.j2",
                repo=repo,
                revision=revision,
                result=result,
                declared=declared,
                bot_username=bot,
                marker=self.ctx.markers.finding(repo, revision),
                reviewed_by="(you)",
                identity=identity,
            )
            return f"# {finding_title(repo, result)}\n\n{body}"
        body = render_finding(
            self.ctx.renderer,
            template="mention_result.md.j2",
            repo=repo,
            revision=revision,
            result=result,
            declared=declared,
            bot_username=bot,
            marker=self.ctx.markers.reply(mention.comment_id, "result"),
            reviewed_by="(you)",
            identity=identity,
        )
        return f"# reply in {mention.repo} discussion #{mention.num}\n\n{body}"

    def _decide(self, finding_id: int, reviewer: str, status: FindingStatus, reason: str | None) -> FindingView:
        if not reviewer.strip():
            raise ReviewError("a reviewer name is required")
        view, current = self.ctx.findings.transition(
            finding_id,
            FindingStatus.PENDING.value,
            {"status": status.value, "reviewer": reviewer, "reason": reason, "decided_at": utcnow()},
        )
        if view is None:
            raise ReviewError(
                f"no finding with id {finding_id}"
                if current is None
                else f"finding {finding_id} is {current}, not pending"
            )
        self.ctx.audit.record(
            "review",
            actor=reviewer,
            repo=view.repo,
            revision=view.revision,
            message=f"{status.value} finding {finding_id}" + (f": {reason}" if reason else ""),
            data={"finding_id": finding_id, "decision": status.value, "reason": reason},
        )
        return view

    def approve(self, finding_id: int, reviewer: str) -> FindingView:
        """Approve a pending finding and queue its post."""
        if self.ctx.settings.bot.mode == "dry_run":
            raise ReviewError("dry-run mode posts nothing; switch bot.mode to review to approve findings")
        view = self._decide(finding_id, reviewer, FindingStatus.APPROVED, None)
        self.ctx.enqueue(
            "post",
            f"post:{finding_id}",
            {"finding_id": finding_id},
            actor=reviewer,
            repo=view.repo,
            revision=view.revision,
        )
        return view

    def reject(self, finding_id: int, reviewer: str, reason: str) -> FindingView:
        if not reason.strip():
            raise ReviewError("a reason is required to reject a finding")
        return self._decide(finding_id, reviewer, FindingStatus.REJECTED, reason.strip())
