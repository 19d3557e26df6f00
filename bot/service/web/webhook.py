"""Webhook calls from the Hub: the secret check and the payloads the bot acts on (typed events).

Everything in a webhook body is untrusted: it is validated into ``huggingface_hub.WebhookPayload``,
and a job re-reads what it acts on from the Hub.
"""

from __future__ import annotations

import hmac
import re

from huggingface_hub import WebhookPayload
from pydantic import ValidationError
from starlette.requests import Request

from provbot.bot.service.events import MentionEvent, UploadEvent
from provbot.detectors.errors import ProvbotError
from provbot.detectors.hub import is_repo_id


class WebhookRejected(ProvbotError):
    """A webhook call was refused (bad secret or malformed payload); ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def check_secret(given: str | None, expected: str | None) -> None:
    """Constant-time comparison of ``X-Webhook-Secret``; refuses when no secret is configured."""
    if not expected:
        raise WebhookRejected("webhook secret not configured", 403)
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookRejected("bad webhook secret", 403)


#: Largest webhook body accepted. The Hub's payloads are a few KB; a comment's text rides along, and
#: a comment is at most about 65,000 characters.
MAX_BODY_BYTES = 256 * 1024


def parse_webhook(body: bytes) -> MentionEvent | UploadEvent | None:
    """Validate a webhook body; None for events the bot does not act on."""
    if len(body) > MAX_BODY_BYTES:
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


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 before reading when its declared length is too large, and
    as soon as more than ``limit`` bytes arrive when it declares none (chunked)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise WebhookRejected(
            "payload too large" if declared.isdigit() else "bad Content-Length", 413 if declared.isdigit() else 400
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise WebhookRejected("payload too large", 413)
    return bytes(body)
