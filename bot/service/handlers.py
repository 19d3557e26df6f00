"""What each job kind does: ``scan``, ``post`` and ``mention``.

Handlers may run more than once for one job (a worker crashed mid-way and the lease expired), so
every side effect is idempotent: findings are unique per repo@revision and origin, jobs per key,
posts per marker, mentions per comment id.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from provbot.bot.db.models_bot import Finding, FindingStatus, Mention, utcnow
from provbot.bot.service.context import BotContext
from provbot.bot.service.findings import (
    declared_lineage,
    finding_marker,
    finding_title,
    moderation_marker,
    needs_post,
    render_finding,
    reply_marker,
)
from provbot.bot.service.identity_check import IdentityCheck, run_identity_check, wants_identity
from provbot.bot.service.jobs import JobView
from provbot.bot.service.mentions import MentionEvent, UploadEvent, parse_mention
from provbot.bot.service.reporting import Trusted, is_repo_id, marker_comment, marker_for, significant_parents
from provbot.bot.service.scanner import ScanRequest
from provbot.detectors.weights.result import ScanResult

log = logging.getLogger(__name__)


class MentionRef(BaseModel):
    """The comment a mention-triggered scan answers."""

    repo: str
    num: int
    comment_id: str
    author: str


class ScanPayload(BaseModel):
    repo: str
    revision: str
    parents: list[str] = []
    base: str | None = None
    origin: str = "poll"
    mention: MentionRef | None = None


def _insert(ctx: BotContext) -> Any:
    return pg_insert if ctx.db.dialect == "postgresql" else sqlite_insert


def summarize(result: ScanResult) -> str:
    """One line for listings: relation, parents with weights, fit quality."""
    parents = ", ".join(f"{p.ref} {p.weight:.2f}" for p in result.parents) or "no parents"
    r2 = f" R2={result.fit_r2:.3f}" if result.fit_r2 is not None else ""
    return f"{result.relation}{f' ({result.method})' if result.method else ''}: {parents}{r2}"


# -- scan -----------------------------------------------------------------------------------------


def handle_scan(ctx: BotContext, job: JobView) -> dict[str, Any]:
    p = ScanPayload.model_validate(job.payload)
    b = ctx.settings.bot
    info = ctx.hub.model_info(p.repo, p.revision)
    declared = declared_lineage(getattr(info, "card_data", None), getattr(info, "tags", None))
    if p.mention is None and (declared["opt_out"] or ctx.opted_out(p.repo)):
        ctx.audit.record(
            "scan", repo=p.repo, revision=p.revision, message="skipped: opted out", data={"job_id": job.id}
        )
        return {"skipped": "opt-out"}
    parents = p.parents or [c for c in b.candidates if c != p.repo]
    base = p.base
    if not parents:
        parents, base, why = _index_candidates(ctx, f"{p.repo}@{p.revision}", base)
        if not parents:
            ctx.audit.record(
                "scan",
                repo=p.repo,
                revision=p.revision,
                message=f"skipped: no candidate parents ({why})",
                data={"job_id": job.id},
            )
            return {"skipped": "no candidates", "why": why}
    result = ctx.scanner(ScanRequest(repo=p.repo, revision=p.revision, parents=parents, base=base))
    ctx.audit.record(
        "scan",
        actor=p.mention.author if p.mention else None,
        repo=p.repo,
        revision=p.revision,
        message=summarize(result),
        data={
            "job_id": job.id,
            "parents": parents,
            "base": base,
            "bytes_read": result.bytes_read,
            "relation": result.relation,
            "method": result.method,
            "fit_r2": result.fit_r2,
            "z": result.z,
            "origin": p.origin,
        },
    )

    # Decide what happens to the finding.
    if p.mention is not None:
        wants_post, reason = True, None
        held = b.mode == "review" and b.mention_replies_need_review
    else:
        wants_post = needs_post(result, declared)
        reason = (
            None
            if wants_post
            else (
                "matches the lineage declared in the model card"
                if significant_parents(result)
                else "no undisclosed parent found"
            )
        )
        held = b.mode == "review"
    if not wants_post:
        status = FindingStatus.RECORDED
    elif b.mode == "dry_run":
        status, reason = FindingStatus.RECORDED, "dry run: nothing is posted"
    elif held:
        status = FindingStatus.PENDING
    else:
        status = FindingStatus.APPROVED

    origin = p.origin
    identity = None
    if wants_identity(ctx.settings, from_mention=p.mention is not None, would_post=wants_post) and not _finding_exists(
        ctx, p.repo, p.revision, origin
    ):
        identity = _identity_check(ctx, p, parents, result, job.id)
    with ctx.db.session(write=True) as s:
        s.execute(
            _insert(ctx)(Finding)
            .values(
                repo=p.repo,
                revision=p.revision,
                origin=origin,
                job_id=job.id,
                relation=result.relation,
                status=status.value,
                summary=summarize(result),
                result=result.model_dump(mode="json"),
                declared=declared,
                reason=reason,
                created_at=utcnow(),
                identity=identity.to_json() if identity is not None else None,
                reviewer="auto" if status == FindingStatus.APPROVED else None,
            )
            .on_conflict_do_nothing(index_elements=["repo", "revision", "origin"])
        )
        finding = s.scalars(
            select(Finding).where(Finding.repo == p.repo, Finding.revision == p.revision, Finding.origin == origin)
        ).one()
        finding_id, final_status = finding.id, finding.status
    ctx.audit.record(
        "finding",
        repo=p.repo,
        revision=p.revision,
        message=f"finding {finding_id}: {final_status}",
        data={"finding_id": finding_id, "status": final_status, "reason": reason},
    )
    if final_status == FindingStatus.APPROVED.value:
        ctx.enqueue("post", f"post:{finding_id}", {"finding_id": finding_id}, repo=p.repo, revision=p.revision)
    out: dict[str, Any] = {"finding_id": finding_id, "status": final_status, "relation": result.relation}
    if identity is not None:
        out["identity"] = identity.note
    return out


def _finding_exists(ctx: BotContext, repo: str, revision: str, origin: str) -> bool:
    """A re-run job (crash, expired lease) whose finding is already stored: the behaviour check is not redone."""
    with ctx.db.session() as s:
        return (
            s.scalars(
                select(Finding.id).where(Finding.repo == repo, Finding.revision == revision, Finding.origin == origin)
            ).first()
            is not None
        )


def _identity_check(
    ctx: BotContext, p: ScanPayload, parents: list[str], result: ScanResult, job_id: int
) -> IdentityCheck:
    """The behaviour check after the weight scan, against the parents the scan found (else those it compared).

    Never raises: a check that cannot run or fails is recorded (audit log and finding) with its reason.
    """
    candidates = significant_parents(result) or list(parents)
    check = run_identity_check(ctx.settings, repo=p.repo, revision=p.revision, candidates=candidates)
    data: dict[str, Any] = {
        "job_id": job_id,
        "status": check.status,
        "reason": check.reason,
        "candidates": candidates,
        "params_b": check.params_b,
    }
    if check.result is not None:
        data.update(verdict=check.result.verdict, generations=check.result.generations, seconds=check.result.seconds)
    ctx.audit.record(
        "identity",
        actor=p.mention.author if p.mention else None,
        repo=p.repo,
        revision=p.revision,
        message=check.note,
        data=data,
    )
    return check


def load_identity(raw: dict[str, Any] | None) -> IdentityCheck | None:
    """The stored behaviour check of a finding (None for findings without one).

    A row that no longer validates (written by another provbot version) must not block posting the
    weight finding: it renders as a check that could not be completed.
    """
    if not raw:
        return None
    try:
        return IdentityCheck.model_validate(raw)
    except ValidationError:
        log.warning("stored identity check does not validate; rendered as not completed")
        return IdentityCheck(status="failed", reason="the stored identity result could not be read")


def _index_candidates(ctx: BotContext, ref: str, base: str | None) -> tuple[list[str], str | None, str]:
    """Parents chosen by the candidate index (bot.index) when neither the mention nor the settings name any."""
    from provbot.bot.index.candidates import select_candidates

    token = ctx.settings.hub_token.get_secret_value() if ctx.settings.hub_token else None
    report = select_candidates(
        ref, database_url=ctx.settings.database_url, endpoint=ctx.settings.hub_endpoint, token=token
    )
    return list(report.chosen), base or report.base, report.inconclusive or "the index chose none"


# -- post -----------------------------------------------------------------------------------------


def parse_origin(origin: str) -> MentionRef | None:
    """``mention:<repo>#<num>:<comment id>:<author>`` back into its parts (None for polls)."""
    if not origin.startswith("mention:"):
        return None
    rest = origin[len("mention:") :]
    repo, _, tail = rest.partition("#")
    num, comment_id, author = tail.split(":", 2)
    return MentionRef(repo=repo, num=int(num), comment_id=comment_id, author=author)


def mention_origin(m: MentionRef) -> str:
    return f"mention:{m.repo}#{m.num}:{m.comment_id}:{m.author}"


def handle_post(ctx: BotContext, job: JobView) -> dict[str, Any]:
    finding_id = int(job.payload["finding_id"])
    with ctx.db.session() as s:
        f = s.get(Finding, finding_id)
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
        marker = finding_marker(repo, revision)
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
            mmarker = moderation_marker(repo, revision)
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
            from provbot.bot.service.github import GitHubIssues

            gmarker = marker_for("github", repo, revision)
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
        marker = reply_marker(mention.comment_id, "result")
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
        with ctx.db.session(write=True) as s:
            f = s.get(Finding, finding_id)
            if f is not None and f.status == FindingStatus.APPROVED.value:
                f.status = FindingStatus.POSTED.value
    return {"finding_id": finding_id, "urls": urls}


# -- mention --------------------------------------------------------------------------------------


def handle_mention(ctx: BotContext, job: JobView) -> dict[str, Any]:
    ev = MentionEvent.model_validate(job.payload)
    b = ctx.settings.bot
    details = ctx.hub.discussion_details(ev.repo, ev.discussion_num)
    comments = [e for e in details.events if getattr(e, "type", "") == "comment"]
    if ev.comment_id is None:
        comment = comments[0] if comments else None
    else:
        comment = next((c for c in comments if c.id == ev.comment_id), None)
    if comment is None or comment.hidden:
        return {"ignored": "comment not found or hidden"}
    author = comment.author or ""
    if author.lower() == b.username.lower():
        return {"ignored": "own comment"}
    cmd = parse_mention(comment.content or "", b.username)
    if cmd is None:
        return {"ignored": "no command"}

    # Record the mention once; a re-run (crash, replay) reuses the first decision.
    with ctx.db.session() as s:
        seen = s.scalars(select(Mention).where(Mention.comment_id == comment.id)).first()
        outcome = seen.outcome if seen is not None else None
    if outcome is None:
        if cmd.problems:
            outcome, reason = "invalid", "I could not read that request: " + "; ".join(cmd.problems) + "."
        else:
            decision = ctx.policy.decide(author, ev.repo)
            outcome = {"accept": "accepted", "refuse": "refused", "silent": "silent"}[decision.decision]
            reason = decision.reason
            if decision.decision == "refuse" and "too many" in decision.reason:
                outcome = "limited"
        with ctx.db.session(write=True) as s:
            s.execute(
                _insert(ctx)(Mention)
                .values(
                    comment_id=comment.id,
                    repo=ev.repo,
                    discussion_num=ev.discussion_num,
                    author=author,
                    command=cmd.model_dump(),
                    outcome=outcome,
                    at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["comment_id"])
            )
        ctx.metrics.mentions.labels(outcome=outcome).inc()
        ctx.audit.record(
            "mention",
            actor=author,
            repo=ev.repo,
            message=f"@{b.username} scan: {outcome}",
            data={
                "discussion": ev.discussion_num,
                "comment_id": comment.id,
                "command": cmd.model_dump(),
                "outcome": outcome,
                "reason": reason,
            },
        )
    else:
        reason = (
            "I could not read that request."
            if outcome == "invalid"
            else (
                "only the repo's owners and the bot's moderators can ask me to scan this repo."
                if outcome == "refused"
                else "too many scans were requested recently; please try again later."
            )
        )

    if outcome in ("refused", "limited", "invalid"):
        marker = reply_marker(comment.id, "refusal")
        body = ctx.renderer.render(
            "mention_refusal.md.j2",
            requester=author,
            reason=reason,
            bot=b.username,
            marker=Trusted(marker_comment(marker)),
        )
        ctx.publisher.ensure_reply(repo=ev.repo, num=ev.discussion_num, body=body, marker=marker)
        return {"outcome": outcome}
    if outcome != "accepted":
        return {"outcome": outcome}

    info = ctx.hub.model_info(ev.repo)
    revision = info.sha or "main"
    ref = MentionRef(repo=ev.repo, num=ev.discussion_num, comment_id=comment.id, author=author)
    payload = ScanPayload(
        repo=ev.repo, revision=revision, parents=cmd.against, base=cmd.base, origin=mention_origin(ref), mention=ref
    )
    ctx.enqueue(
        "scan",
        f"scan:{ev.repo}@{revision}:mention:{comment.id}",
        payload.model_dump(),
        actor=author,
        repo=ev.repo,
        revision=revision,
    )
    marker = reply_marker(comment.id, "ack")
    held = b.mode == "review" and b.mention_replies_need_review
    body = ctx.renderer.render(
        "mention_ack.md.j2",
        requester=author,
        repo=ev.repo,
        against=cmd.against,
        base=cmd.base,
        held=held,
        bot=b.username,
        marker=Trusted(marker_comment(marker)),
    )
    ctx.publisher.ensure_reply(repo=ev.repo, num=ev.discussion_num, body=body, marker=marker)
    return {"outcome": outcome, "revision": revision}


# -- upload (repo.content webhook) ---------------------------------------------------------------


def handle_upload(ctx: BotContext, job: JobView) -> dict[str, Any]:
    """A push to a watched model repo: scan it like a polled upload (same job key, so never twice)."""
    from provbot.bot.service.poller import skip_reason

    ev = UploadEvent.model_validate(job.payload)
    info = ctx.hub.model_info(ev.repo, ev.revision)
    if (reason := skip_reason(ctx, info)) is not None:
        return {"skipped": reason}
    revision = getattr(info, "sha", None) or ev.revision
    payload = {"repo": ev.repo, "revision": revision, "origin": "poll"}
    job_id = ctx.enqueue("scan", f"scan:{ev.repo}@{revision}", payload, repo=ev.repo, revision=revision)
    return {"scan_job": job_id}


HANDLERS = {"scan": handle_scan, "post": handle_post, "mention": handle_mention, "upload": handle_upload}
