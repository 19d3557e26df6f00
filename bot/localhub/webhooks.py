"""Webhook delivery: the Hub's v3 payloads POSTed to configured targets, in a background thread.

Payloads validate as ``huggingface_hub.WebhookPayload``. Each target gets the header
``X-Webhook-Secret`` (when it has a secret); failed deliveries (network error or non-2xx) are
retried with backoff, then recorded as failed in ``deliveries``; nothing blocks the request that
caused the event.

>>> from provbot.bot.localhub.models import ServerOptions
>>> payload = build_payload("create", "repo.content", "acme/tiny", private=False, head_sha="a" * 40)
>>> payload["webhook"]["version"], payload["repo"]["name"]
(3, 'acme/tiny')
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from provbot.bot.localhub.models import ServerOptions, WebhookTarget

log = logging.getLogger(__name__)
RETRY_DELAYS_S = (0.2, 0.5, 1.0)
MAX_KEPT = 1000
WEB_BASE = "https://huggingface.co"  # what the Hub puts in url.web; clients only display it


def object_id(name: str) -> str:
    """A stable 24-hex id for a user, org or repo name (the Hub's ids are Mongo ObjectIds)."""
    return hashlib.sha1(name.encode()).hexdigest()[:24]


def build_payload(
    action: str,
    scope: str,
    repo_id: str,
    *,
    private: bool,
    head_sha: str | None = None,
    discussion: dict[str, Any] | None = None,
    comment: dict[str, Any] | None = None,
    updated_refs: list[dict[str, Any]] | None = None,
    webhook_id: str = "localhub-webhook",
) -> dict[str, Any]:
    """One v3 payload. ``discussion``/``comment`` are already in the payload's shape."""
    org = repo_id.split("/")[0]
    repo: dict[str, Any] = {
        "type": "model",
        "name": repo_id,
        "id": object_id(repo_id),
        "private": private,
        "owner": {"id": object_id(org)},
        "url": {"web": f"{WEB_BASE}/{repo_id}", "api": f"{WEB_BASE}/api/models/{repo_id}"},
    }
    if head_sha:
        repo["headSha"] = head_sha  # the Hub's spelling
        repo["head_sha"] = head_sha  # the field name huggingface_hub's model reads
    payload: dict[str, Any] = {
        "event": {"action": action, "scope": scope},
        "repo": repo,
        "webhook": {"id": webhook_id, "version": 3},
    }
    if discussion is not None:
        payload["discussion"] = discussion
    if comment is not None:
        payload["comment"] = comment
    if updated_refs is not None:
        payload["updatedRefs"] = updated_refs
    return payload


@dataclass
class Delivery:
    """The outcome of one payload sent to one target."""

    target: str
    payload: dict[str, Any]
    status: int | None = None  # last HTTP status; None after network errors only
    attempts: int = 0
    ok: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class WebhookSender:
    """Queues payloads and delivers them from one daemon thread, with retries."""

    def __init__(self, options: ServerOptions):
        self.options = options
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def emit(self, payload_for: Any) -> list[Delivery]:
        """Queue a payload for every target; ``payload_for(target)`` builds it (webhook id differs)."""
        out = []
        for target in list(self.options.webhooks):
            delivery = Delivery(target=target.url, payload=payload_for(target))
            with self._lock:
                self.deliveries.append(delivery)
                if len(self.deliveries) > MAX_KEPT:  # long-running servers: keep the recent ones
                    del self.deliveries[: len(self.deliveries) - MAX_KEPT]
            out.append(delivery)
            self._ensure_thread()
            self._queue.put(delivery)
        return out

    def repo_content(
        self, repo_id: str, private: bool, revision: str, sha: str, action: str, old_sha: str | None = None
    ) -> None:
        ref = f"refs/heads/{revision}"
        self.emit(
            lambda t: build_payload(
                action,
                "repo.content",
                repo_id,
                private=private,
                head_sha=sha,
                updated_refs=[{"ref": ref, "oldSha": old_sha, "newSha": sha}],
                webhook_id=t.id,
            )
        )

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued delivery finished (for tests); False on timeout."""
        deadline = time.monotonic() + timeout
        for d in list(self.deliveries):
            if not d.done.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="localhub-webhooks", daemon=True)
                self._thread.start()

    def _target(self, url: str) -> WebhookTarget | None:
        return next((t for t in self.options.webhooks if t.url == url), None)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while True:
                delivery = self._queue.get()
                if delivery is None:
                    return
                try:
                    self._deliver(client, delivery)
                finally:
                    delivery.done.set()

    def _deliver(self, client: httpx.Client, delivery: Delivery) -> None:
        target = self._target(delivery.target)
        headers = {"Content-Type": "application/json", "User-Agent": "localhub-webhooks/1"}
        if target is not None and target.secret is not None:
            headers["X-Webhook-Secret"] = target.secret.get_secret_value()
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS_S)):
            if delay:
                time.sleep(delay)
            delivery.attempts = attempt + 1
            try:
                response = client.post(delivery.target, json=delivery.payload, headers=headers)
            except httpx.HTTPError as exc:
                log.info("webhook to %s failed: %s", delivery.target, type(exc).__name__)
                continue
            delivery.status = response.status_code
            if 200 <= response.status_code < 300:
                delivery.ok = True
                return
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                return  # the receiver rejected it (bad secret?): retrying will not help
        log.warning("webhook to %s gave up after %d attempts", delivery.target, delivery.attempts)
