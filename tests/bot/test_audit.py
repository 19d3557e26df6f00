"""Audit log: append-only, filtered queries, secrets redacted; log records redacted too."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from provbot.bot.db.database import Database
from provbot.bot.db.models_bot import AuditRecord, utcnow
from provbot.bot.service.audit import AuditLog
from provbot.bot.service.redact import RedactingFilter, Redactor

TOKEN = "hf_SuperSecretValue123456"


def test_records_are_redacted_and_append_only(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    db.migrate()
    log = AuditLog(db, Redactor([TOKEN, "whsec-xyz1"]))
    log.record(
        "error",
        actor="bot",
        repo="org/m",
        message=f"failed with token {TOKEN}",
        data={"headers": {"authorization": f"Bearer {TOKEN}"}, "secret": "whsec-xyz1", "n": 3},
    )
    log.record("poll", message="ok")
    log.record("mention", actor="alice", repo="alice/m")
    entries = log.query()
    dumped = " ".join(e.model_dump_json() for e in entries)
    assert TOKEN not in dumped and "whsec-xyz1" not in dumped and "[redacted]" in dumped
    assert [e.kind for e in log.query(actor="alice")] == ["mention"]
    assert [e.kind for e in log.query(repo="org/m")] == ["error"]
    assert log.query(since=utcnow() + timedelta(minutes=1)) == []
    with pytest.raises(PermissionError), db.session() as s:
        s.get(AuditRecord, entries[0].id).message = "tampered"
        s.flush()
    with pytest.raises(PermissionError), db.session() as s:
        s.delete(s.get(AuditRecord, entries[0].id))
        s.flush()
    assert log.query(kind="error")[0].message.startswith("failed with token [redacted]")


def test_log_filter_redacts_messages_and_args(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("provbot-test-redact")
    flt = RedactingFilter(Redactor([TOKEN]))
    caplog.handler.addFilter(flt)
    try:
        with caplog.at_level(logging.INFO, logger="provbot-test-redact"):
            logger.info("calling hub with %s", TOKEN)
            logger.info("header Authorization: Bearer %s", "abc.def")
    finally:
        caplog.handler.removeFilter(flt)
    assert TOKEN not in caplog.text and "abc.def" not in caplog.text
