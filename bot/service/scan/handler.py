"""The ``scan`` job: read the child's card, choose candidates, scan, decide the finding's fate.

Handlers may run more than once for one job (a worker crashed mid-way and the lease expired), so
every side effect is idempotent: findings are unique per repo@revision and origin, jobs per key.
The ``upload`` job (a push announced by a webhook) turns into a ``scan`` job with a poll's key.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from provbot.bot.db.jobs import JobView
from provbot.bot.db.models_bot import FindingStatus
from provbot.bot.service.context import BotContext
from provbot.bot.service.events import UploadEvent
from provbot.bot.service.mentions.origin import MentionRef
from provbot.bot.service.poll.poller import skip_reason
from provbot.bot.service.publish.render import significant_parents
from provbot.bot.service.review.findings import declared_lineage, needs_post
from provbot.bot.service.scan.identity_check import IdentityCheck, run_identity_check, wants_identity
from provbot.bot.service.scan.scanner import ScanRequest
from provbot.detectors.weights.result import ScanResult

log = logging.getLogger(__name__)


class ScanPayload(BaseModel):
    repo: str
    revision: str
    parents: list[str] = []
    base: str | None = None
    origin: str = "poll"
    mention: MentionRef | None = None


def summarize(result: ScanResult) -> str:
    """One line for listings: relation, parents with weights, fit quality."""
    parents = ", ".join(f"{p.ref} {p.weight:.2f}" for p in result.parents) or "no parents"
    r2 = f" R2={result.fit_r2:.3f}" if result.fit_r2 is not None else ""
    return f"{result.relation}{f' ({result.method})' if result.method else ''}: {parents}{r2}"


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
    # A re-run job (crash, expired lease) whose finding is already stored does not redo the behaviour check.
    if wants_identity(
        ctx.settings, from_mention=p.mention is not None, would_post=wants_post
    ) and not ctx.findings.exists(p.repo, p.revision, origin):
        identity = _identity_check(ctx, p, parents, result, job.id)
    finding_id, final_status = ctx.findings.add_once(
        {
            "repo": p.repo,
            "revision": p.revision,
            "origin": origin,
            "job_id": job.id,
            "relation": result.relation,
            "status": status.value,
            "summary": summarize(result),
            "result": result.model_dump(mode="json"),
            "declared": declared,
            "reason": reason,
            "identity": identity.to_json() if identity is not None else None,
            "reviewer": "auto" if status == FindingStatus.APPROVED else None,
        }
    )
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


def _identity_check(
    ctx: BotContext, p: ScanPayload, parents: list[str], result: ScanResult, job_id: int
) -> IdentityCheck:
    """The behaviour check after the weight scan, against the parents the scan found (else those it compared).

    A check that cannot run or fails is recorded (audit log and finding) with its reason; only a Hub rate
    limit raises, so the queue runs the whole job again after the reset.
    """
    candidates = significant_parents(result) or list(parents)
    check = run_identity_check(ctx.settings, repo=p.repo, revision=p.revision, candidates=candidates, client=ctx.hub)
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


def _index_candidates(ctx: BotContext, ref: str, base: str | None) -> tuple[list[str], str | None, str]:
    """Parents chosen by the candidate index (bot.index) when neither the mention nor the settings name any."""
    from provbot.bot.index.candidates import select_candidates

    token = ctx.settings.hub_token.get_secret_value() if ctx.settings.hub_token else None
    # One IndexStore per context (one per worker process): its family caches serve job after job.
    report = select_candidates(
        ref, store=ctx.index_store, endpoint=ctx.settings.hub_endpoint, token=token, client=ctx.hub
    )
    return list(report.chosen), base or report.base, report.inconclusive or "the index chose none"


def handle_upload(ctx: BotContext, job: JobView) -> dict[str, Any]:
    """A push to a watched model repo: scan it like a polled upload (same job key, so never twice)."""
    ev = UploadEvent.model_validate(job.payload)
    info = ctx.hub.model_info(ev.repo, ev.revision)
    if (reason := skip_reason(ctx, info)) is not None:
        return {"skipped": reason}
    revision = getattr(info, "sha", None) or ev.revision
    payload = {"repo": ev.repo, "revision": revision, "origin": "poll"}
    job_id = ctx.enqueue("scan", f"scan:{ev.repo}@{revision}", payload, repo=ev.repo, revision=revision)
    return {"scan_job": job_id}
