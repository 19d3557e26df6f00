"""Prometheus metrics of the service, on a registry of its own (several services may share a process in tests).

>>> m = BotMetrics()
>>> m.webhooks.labels(outcome="accepted").inc()
>>> b"provbot_webhooks_total" in m.render()
True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class BotMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter("provbot_polls_total", "Listing walks, by outcome.", ["outcome"], registry=r)
        self.enqueued = Counter("provbot_jobs_enqueued_total", "Jobs enqueued, by kind.", ["kind"], registry=r)
        self.jobs = Counter(
            "provbot_jobs_finished_total",
            "Job attempts finished, by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.webhooks = Counter("provbot_webhooks_total", "Webhook calls, by outcome.", ["outcome"], registry=r)
        self.mentions = Counter("provbot_mentions_total", "Mentions, by outcome.", ["outcome"], registry=r)
        self.posts = Counter(
            "provbot_posts_total", "Posts made or edited on the Hub, by target.", ["target", "action"], registry=r
        )
        self.queue = Gauge("provbot_queue_jobs", "Jobs in the queue, by state.", ["state"], registry=r)
        self.poll_owner = Gauge(
            "provbot_poller_owner",
            "1 while this process holds the poller lease (walks the listings), else 0.",
            registry=r,
        )
        self.poll_lease = Counter(
            "provbot_poller_lease_changes_total",
            "Poller lease changes seen by this process: acquired, took_over, lost, released.",
            ["event"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
