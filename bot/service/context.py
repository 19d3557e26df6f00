"""Everything a job handler, the poller or the CLI needs, built once from the settings.

>>> from provbot.bot.settings import Settings
>>> ctx = BotContext.build(Settings(database_url="sqlite://", hub_endpoint="http://127.0.0.1:9"))
>>> ctx.settings.bot.mode
'review'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provbot.bot.db.cursors import CursorStore
from provbot.bot.db.database import Database
from provbot.bot.db.findings import FindingStore
from provbot.bot.db.jobs import JobQueue
from provbot.bot.db.mentions import MentionStore
from provbot.bot.service.audit import AuditLog
from provbot.bot.service.mentions.policy import MentionPolicy
from provbot.bot.service.metrics import BotMetrics
from provbot.bot.service.publish.markers import Markers
from provbot.bot.service.publish.publisher import Publisher
from provbot.bot.service.publish.render import Renderer
from provbot.bot.service.queue.budget import Reservations
from provbot.bot.service.redact import Redactor
from provbot.bot.service.scan.scanner import Scanner, hub_scanner
from provbot.bot.settings import Settings
from provbot.detectors.errors import RemoteError
from provbot.detectors.hub import HubClient, RetryPolicy
from provbot.detectors.weights.header_cache import configure_header_cache

if TYPE_CHECKING:
    from provbot.bot.index.store import IndexStore


#: Longest rate-limit window a worker waits out; a later reset reschedules the job instead of
#: holding a worker (and its lease) idle.
SERVICE_MAX_WAIT_S = 30.0


class ServiceStopping(RemoteError):
    """A job was interrupted because the service stops; the queue runs it again later."""


@dataclass
class BotContext:
    settings: Settings
    db: Database
    queue: JobQueue
    audit: AuditLog
    hub: HubClient
    publisher: Publisher
    renderer: Renderer
    scanner: Scanner
    policy: MentionPolicy
    metrics: BotMetrics
    redactor: Redactor
    findings: FindingStore
    mentions: MentionStore
    cursors: CursorStore
    markers: Markers
    #: Set when the service stops: waits between retries end at once and the job goes back to the queue.
    stopping: threading.Event = field(default_factory=threading.Event)
    #: Hub requests promised to the jobs running in this process (see queue/budget.py).
    reservations: Reservations = field(default_factory=Reservations)
    _index_store: IndexStore | None = field(default=None, repr=False)

    @property
    def index_store(self) -> IndexStore:
        """The candidate index, opened once per context (one per worker process): its family caches
        then serve every scan job of the worker instead of being rebuilt per job."""
        if self._index_store is None:
            from provbot.bot.index.store import IndexStore

            self._index_store = IndexStore(self.settings.database_url)
        return self._index_store

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        scanner: Scanner | None = None,
        db: Database | None = None,
        sleep: Callable[[float], None] = time.sleep,
        migrate: bool = True,
    ) -> BotContext:
        b = settings.bot
        stopping = threading.Event()

        def pause(seconds: float) -> None:
            """Wait before a retry, unless the service is stopping (then the job is handed back)."""
            if stopping.is_set() or (sleep is time.sleep and stopping.wait(seconds)):
                raise ServiceStopping("the service is stopping; the job goes back to the queue")
            if sleep is not time.sleep:
                sleep(seconds)

        token = settings.hub_token.get_secret_value() if settings.hub_token else None
        secret = b.webhook_secret.get_secret_value() if b.webhook_secret else None
        github = b.github_token.get_secret_value() if b.github_token else None
        console_key = settings.console.session_secret
        oauth_secret = settings.console.oauth.client_secret
        redactor = Redactor(
            [
                token,
                secret,
                github,
                console_key.get_secret_value() if console_key else None,
                oauth_secret.get_secret_value() if oauth_secret else None,
            ]
        )
        database = db or Database(settings.database_url)
        if migrate:
            database.migrate()
        metrics = BotMetrics()
        audit = AuditLog(database, redactor)
        retry = RetryPolicy(
            max_retries=b.http_retries,
            max_backoff_s=b.backoff_max_seconds,
            max_wait_s=min(SERVICE_MAX_WAIT_S, b.backoff_max_seconds),
            sleep=pause,
        )
        hub = HubClient(settings.hub_endpoint, token, retry=retry)
        configure_header_cache(settings.header_cache_dir)  # headers by commit, shared by every job
        return cls(
            settings=settings,
            db=database,
            queue=JobQueue(database, lease_seconds=b.lease_seconds, backoff_max=b.backoff_max_seconds),
            audit=audit,
            hub=hub,
            publisher=Publisher(hub, database, audit, metrics, bot_username=b.username, dry_run=b.mode == "dry_run"),
            renderer=Renderer(),
            scanner=scanner or hub_scanner(settings.hub_endpoint, token, settings.scan, client=hub),
            policy=MentionPolicy(
                MentionStore(database),
                bot_username=b.username,
                moderators=b.moderators,
                per_user_per_day=b.mentions_per_user_per_day,
                per_repo_per_hour=b.mentions_per_repo_per_hour,
                members=hub.org_members,
            ),
            metrics=metrics,
            redactor=redactor,
            findings=FindingStore(database),
            mentions=MentionStore(database),
            cursors=CursorStore(database),
            stopping=stopping,
            markers=Markers.from_secrets(b.marker_key.get_secret_value() if b.marker_key else None, token),
        )

    def enqueue(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        actor: str | None = None,
        repo: str | None = None,
        revision: str | None = None,
    ) -> int | None:
        """Enqueue a job (idempotent by ``key``) and audit it when it is new."""
        job_id = self.queue.enqueue(kind, key, payload, max_attempts=self.settings.bot.max_attempts)
        if job_id is not None:
            self.metrics.enqueued.labels(kind=kind).inc()
            self.audit.record(
                "enqueue",
                actor=actor,
                repo=repo,
                revision=revision,
                message=f"{kind} job {job_id}",
                data={"job_id": job_id, "kind": kind, "key": key},
            )
        return job_id

    def opted_out(self, repo: str) -> bool:
        """Repos or whole namespaces listed in ``bot.opt_out``."""
        listed = {x.lower() for x in self.settings.bot.opt_out}
        return repo.lower() in listed or repo.split("/", 1)[0].lower() in listed
