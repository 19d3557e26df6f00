"""The provbot service: poller, mentions, durable job queue, workers, review, reporting, audit, app.

Modules have one job each:

- ``database``: engine and sessions for the bot tables (SQLite or PostgreSQL).
- ``jobs``: the durable queue (leases, retries, idempotent keys); ``workers``: the pool that runs it.
- ``audit``: the append-only audit log; ``redact``: keeps secrets out of logs and records.
- ``hub``: Hub calls with retries and rate-limit backoff; ``poller``: new uploads -> scan jobs.
- ``mentions``: ``@provbot`` parsing, authorisation, webhook payload checks.
- ``reporting``: Jinja2 rendering with markdown escaping; ``publish``: one post per finding, edited later.
- ``review``: moderator decisions; ``handlers``: what each job kind does; ``app``: the running service.
"""
