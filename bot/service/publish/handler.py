"""The ``post`` job: publish an approved finding (discussion, moderation issue, GitHub issue, reply).

Posting is idempotent: the publisher finds an earlier post by its marker and edits it instead.
"""

from __future__ import annotations

from typing import Any

from provbot.bot.db.jobs import JobView
from provbot.bot.db.models_bot import FindingStatus
from provbot.bot.service.context import BotContext
from provbot.bot.service.mentions.origin import parse_origin
from provbot.bot.service.publish.github import GitHubIssues
from provbot.bot.service.publish.render import Trusted
from provbot.bot.service.review.findings import finding_title, render_finding
from provbot.bot.service.scan.identity_check import load_identity
from provbot.detectors.hub import is_repo_id
from provbot.detectors.weights.result import ScanResult


def handle_post(ctx: BotContext, job: JobView) -> dict[str, Any]:
    finding_id = int(job.payload["finding_id"])
    f = ctx.findings.get(finding_id)
    if f is None:
        return {"skipped": "no such finding"}
    repo, revision, origin, status = f.repo, f.revision, f.origin, f.status
    result = ScanResult.model_validate(f.result)
    declared, reviewer = dict(f.declared), f.reviewer
    identity = load_identity(f.identity)
    if status not in (FindingStatus.APPROVED.value, FindingStatus.POSTED.value):
        return {"skipped": f"finding is {status}"}
    b = ctx.settings.bot
    approved_by = reviewer
    reviewed_by = reviewer if reviewer and reviewer != "auto" else None
    urls: dict[str, str | None] = {}
    mention = parse_origin(origin)
    if mention is None:
        marker = ctx.markers.finding(repo, revision)
        body = render_finding(
            ctx.renderer,
            template="finding_discussion.md.j2",
            repo=repo,
            revision=revision,
            result=result,
            declared=declared,
            bot_username=b.username,
            marker=marker,
            reviewed_by=reviewed_by,
            identity=identity,
        )
        ref = ctx.publisher.ensure_discussion(
            target="discussion",
            repo=repo,
            title=finding_title(repo, result),
            body=body,
            marker=marker,
            finding_id=finding_id,
            approved_by=approved_by,
        )
        urls["discussion"] = ref.url
        if b.moderation_repo:
            mmarker = ctx.markers.moderation(repo, revision)
            mbody = render_finding(
                ctx.renderer,
                template="moderation_issue.md.j2",
                repo=repo,
                revision=revision,
                result=result,
                declared=declared,
                bot_username=b.username,
                marker=mmarker,
                reviewed_by=reviewed_by,
                identity=identity,
                public_url=Trusted(ref.url) if ref.url and is_repo_id(repo) else ref.url,
            )
            mref = ctx.publisher.ensure_discussion(
                target="moderation",
                repo=b.moderation_repo,
                title=f"[provbot] {finding_title(repo, result)}",
                body=mbody,
                marker=mmarker,
                finding_id=finding_id,
                approved_by=approved_by,
            )
            urls["moderation"] = mref.url
        if b.github_repo:
            gmarker = ctx.markers.github(repo, revision)
            gbody = render_finding(
                ctx.renderer,
                template="moderation_issue.md.j2",
                repo=repo,
                revision=revision,
                result=result,
                declared=declared,
                bot_username=b.username,
                marker=gmarker,
                reviewed_by=reviewed_by,
                identity=identity,
                public_url=Trusted(ref.url) if ref.url and is_repo_id(repo) else ref.url,
            )
            gh = GitHubIssues(
                b.github_api, b.github_repo, b.github_token.get_secret_value() if b.github_token else None
            )
            try:
                gref = ctx.publisher.ensure_github_issue(
                    gh,
                    repo_label=f"github:{b.github_repo}",
                    title=f"[provbot] {finding_title(repo, result)}",
                    body=gbody,
                    marker=gmarker,
                    finding_id=finding_id,
                    approved_by=approved_by,
                )
            finally:
                gh.close()
            urls["github"] = gref.url
    else:
        marker = ctx.markers.reply(mention.comment_id, "result")
        body = render_finding(
            ctx.renderer,
            template="mention_result.md.j2",
            repo=repo,
            revision=revision,
            result=result,
            declared=declared,
            bot_username=b.username,
            marker=marker,
            reviewed_by=reviewed_by,
            identity=identity,
        )
        ref = ctx.publisher.ensure_reply(
            repo=mention.repo, num=mention.num, body=body, marker=marker, finding_id=finding_id, approved_by=approved_by
        )
        urls["reply"] = ref.url
    if b.mode != "dry_run":
        ctx.findings.transition(finding_id, FindingStatus.APPROVED.value, {"status": FindingStatus.POSTED.value})
    return {"finding_id": finding_id, "urls": urls}
