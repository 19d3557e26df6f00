"""Moderator review: list, show, claim, approve, reject, hold and rescan findings held before posting.

Approving queues a ``post`` job (the running service posts it, with retries); rejecting records the
reason; holding puts a finding aside (it can still be approved or rejected); a rescan queues a new
scan job. Every decision is audited with the moderator's name. The CLI and the web console
(bot/service/console) take this same path.

A decision may carry the finding's ``version`` as the moderator saw it: when the finding changed
since, the decision is refused as stale. A finding claimed by another moderator in the console (a
soft lock, ``CLAIM_TTL``) cannot be decided by anyone else until the claim lapses.
"""

from __future__ import annotations

from datetime import timedelta

from provbot.bot.db.findings import FindingView
from provbot.bot.db.models_bot import FindingStatus, utcnow
from provbot.bot.service.context import BotContext
from provbot.bot.service.mentions.origin import parse_origin
from provbot.bot.service.publish.render import is_repo_id
from provbot.bot.service.review.findings import finding_title, render_finding
from provbot.bot.service.scan.identity_check import load_identity
from provbot.detectors.errors import ProvbotError
from provbot.detectors.weights.result import ScanResult

__all__ = ["CLAIM_TTL", "OPEN", "Claimed", "FindingView", "Review", "ReviewError", "StaleDecision"]


class ReviewError(ProvbotError):
    """A review command cannot be applied (unknown finding, wrong state, missing reason)."""


#: Statuses a moderator can still decide on.
OPEN = (FindingStatus.PENDING.value, FindingStatus.HELD.value)
#: How long a console claim holds off other moderators without being renewed.
CLAIM_TTL = timedelta(minutes=15)


class StaleDecision(ReviewError):
    """The finding changed since the moderator's page was loaded."""


class Claimed(ReviewError):
    """Another moderator holds the finding."""


class Review:
    def __init__(self, ctx: BotContext) -> None:
        self.ctx = ctx

    def _audit(self, f: FindingView, actor: str, message: str, data: dict[str, object]) -> None:
        self.ctx.audit.record("review", actor=actor, repo=f.repo, revision=f.revision, message=message, data=data)

    def claim(self, finding_id: int, moderator: str, *, force: bool = False) -> FindingView:
        """Claim a finding for ``moderator`` (renewing their own claim); the stored finding, whose
        ``claimed_by`` names another moderator when they hold it. ``force`` takes it over (audited)."""
        before = self.get(finding_id)
        view = self.ctx.findings.claim(finding_id, moderator, CLAIM_TTL, force=force)
        if view is None:
            raise ReviewError(f"no finding with id {finding_id}")
        if view.claimed_by == moderator and before.claimed_by != moderator:
            took = f" (taken over from {before.claimed_by})" if force and before.claimed_by else ""
            self._audit(
                view,
                moderator,
                f"claimed finding {finding_id}{took}",
                {"finding_id": finding_id, "decision": "claim", "previous": before.claimed_by},
            )
        return view

    def _check_claim(self, finding_id: int, reviewer: str) -> None:
        f = self.get(finding_id)
        if f.claimed_by and f.claimed_by != reviewer and f.claimed_at and utcnow() - f.claimed_at <= CLAIM_TTL:
            raise Claimed(
                f"finding {finding_id} is being reviewed by {f.claimed_by} (claimed {f.claimed_at:%H:%M} UTC)"
            )

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

    def _decide(
        self, finding_id: int, reviewer: str, status: FindingStatus, reason: str | None, version: str | None = None
    ) -> FindingView:
        if not reviewer.strip():
            raise ReviewError("a reviewer name is required")
        self._check_claim(finding_id, reviewer)
        final = status is not FindingStatus.HELD
        values: dict[str, object] = {"status": status.value, "reviewer": reviewer, "reason": reason}
        if final:
            values.update(decided_at=utcnow(), claimed_by=None, claimed_at=None)
        view, current = self.ctx.findings.transition(finding_id, OPEN, values, version=version)
        if view is None:
            if current == "stale":
                raise StaleDecision(
                    f"finding {finding_id} changed since you loaded it; nothing was done. Reload it and decide again."
                )
            raise ReviewError(
                f"no finding with id {finding_id}"
                if current is None
                else f"finding {finding_id} is {current}, not pending"
            )
        self._audit(
            view,
            reviewer,
            f"{status.value} finding {finding_id}" + (f": {reason}" if reason else ""),
            {"finding_id": finding_id, "decision": status.value, "reason": reason},
        )
        return view

    def approve(self, finding_id: int, reviewer: str, *, version: str | None = None) -> FindingView:
        """Approve a pending (or held) finding and queue its post."""
        if self.ctx.settings.bot.mode == "dry_run":
            raise ReviewError("dry-run mode posts nothing; switch bot.mode to review to approve findings")
        view = self._decide(finding_id, reviewer, FindingStatus.APPROVED, None, version)
        self.ctx.enqueue(
            "post",
            f"post:{finding_id}",
            {"finding_id": finding_id},
            actor=reviewer,
            repo=view.repo,
            revision=view.revision,
        )
        return view

    def reject(self, finding_id: int, reviewer: str, reason: str, *, version: str | None = None) -> FindingView:
        if not reason.strip():
            raise ReviewError("a reason is required to reject a finding")
        return self._decide(finding_id, reviewer, FindingStatus.REJECTED, reason.strip(), version)

    def hold(
        self, finding_id: int, reviewer: str, reason: str | None = None, *, version: str | None = None
    ) -> FindingView:
        """Put a finding aside: nothing is posted; it can still be approved or rejected later."""
        return self._decide(finding_id, reviewer, FindingStatus.HELD, (reason or "").strip() or None, version)

    def rescan(self, finding_id: int, reviewer: str, parents: list[str] | None = None) -> int | None:
        """Queue a new scan of the finding's repo@revision (against ``parents`` when given, else the
        configured candidates); the job id, None when the same scan is already queued."""
        if not reviewer.strip():
            raise ReviewError("a reviewer name is required")
        f = self.get(finding_id)
        wanted = sorted({p.strip() for p in parents or [] if p.strip()})
        if bad := [p for p in wanted if not is_repo_id(p)]:
            raise ReviewError(f"not a model id: {bad[0]!r}")
        stamp = f"{utcnow():%Y%m%dT%H%M%S}"
        payload = {"repo": f.repo, "revision": f.revision, "parents": wanted, "origin": f"rescan:{finding_id}:{stamp}"}
        key = f"rescan:{finding_id}:{stamp}:{','.join(wanted)}"
        job_id = self.ctx.enqueue("scan", key, payload, actor=reviewer, repo=f.repo, revision=f.revision)
        self._audit(
            f,
            reviewer,
            f"rescan of finding {finding_id} requested" + (f" against {', '.join(wanted)}" if wanted else ""),
            {"finding_id": finding_id, "decision": "rescan", "parents": wanted, "job_id": job_id},
        )
        return job_id
