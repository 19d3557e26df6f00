"""The ``mention`` job: read the comment again from the Hub, decide, acknowledge, queue the scan.

A mention is recorded once per comment id: a replayed job reuses the first decision.
"""

from __future__ import annotations

from typing import Any

from provbot.bot.db.jobs import JobView
from provbot.bot.service.context import BotContext
from provbot.bot.service.events import MentionEvent
from provbot.bot.service.mentions.origin import MentionRef, mention_origin
from provbot.bot.service.mentions.parse import parse_mention
from provbot.bot.service.publish.markers import marker_comment
from provbot.bot.service.publish.render import Trusted
from provbot.bot.service.scan.handler import ScanPayload


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
    outcome = ctx.mentions.outcome_of(comment.id)
    if outcome is None:
        # Who may ask, and how often, is settled before anything else: a stranger's malformed
        # requests get the one refusal a day every stranger gets, never a reply each.
        decision = ctx.policy.decide(author, ev.repo)
        outcome = {"accept": "accepted", "refuse": "refused", "silent": "silent"}[decision.decision]
        reason = decision.reason
        if decision.decision == "refuse" and decision.cause == "rate_limited":
            outcome = "limited"
        elif decision.decision == "accept" and cmd.problems:
            outcome, reason = "invalid", "I could not read that request: " + "; ".join(cmd.problems) + "."
        ctx.mentions.record(
            {
                "comment_id": comment.id,
                "repo": ev.repo,
                "discussion_num": ev.discussion_num,
                "author": author,
                "command": cmd.model_dump(),
                "outcome": outcome,
            }
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
                "only the repo's owners (or its organisation's members) and the bot's moderators can ask me to scan this repo."
                if outcome == "refused"
                else "too many scans were requested recently; please try again later."
            )
        )

    if outcome in ("refused", "limited", "invalid"):
        marker = ctx.markers.reply(comment.id, "refusal")
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
    marker = ctx.markers.reply(comment.id, "ack")
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
