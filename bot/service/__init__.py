"""The provbot service, folder by stage of the flow:

- ``poll/``: walk the Hub's listings of new uploads and queue ``scan`` jobs;
- ``queue/``: run the durable job queue (``provbot.bot.db.jobs``): the worker pool, the in-process
  and Ray executors, and one claimed job's run;
- ``scan/``: the ``scan`` and ``upload`` jobs: candidates, the weight scan, the behaviour check,
  the finding;
- ``review/``: moderators' decisions, and what makes a finding worth posting;
- ``publish/``: the ``post`` job: texts rendered from ``templates/`` with markdown escaping, one post
  per marker (edited, never duplicated), moderation and GitHub issues;
- ``mentions/``: ``@provbot scan`` comments: parsing, who may ask, the ``mention`` job;
- ``web/``: the HTTP app (webhook, health, metrics) and the webhook payloads.

Across stages: ``context`` (everything a job needs, built once from the settings), ``handlers`` (which
job kind runs which stage's handler), ``events`` (what starts a job), ``audit`` (the append-only
log), ``redact`` (secrets out of logs and records), ``metrics``, ``hub`` (Hub calls) and ``runner``
(scheduler, workers and HTTP app started together: ``provbot run``). SQL lives in ``provbot.bot.db``.
"""
