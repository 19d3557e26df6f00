"""Fixtures of the bot tests: a database per test (SQLite, or PostgreSQL when configured),
a local Hub with users and the bot's token, and contexts wired to them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.bot.helpers import BOT_TOKEN, USERS, WEBHOOK_SECRET, ScriptedScanner, bot_settings, build_ctx, model_files

BOT_TABLES = (
    "bot_jobs",
    "bot_audit",
    "bot_poll_cursors",
    "bot_leases",
    "bot_findings",
    "bot_posts",
    "bot_mentions",
    "bot_scheduler_jobs",
)


@pytest.fixture(scope="session")
def _pg_database() -> Iterator[str | None]:
    """A private PostgreSQL database for this test session (dropped after), so parallel runs never collide."""
    base = os.environ.get("PROVBOT_TEST_POSTGRES_URL")
    if not base:
        yield None
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base)
    name = f"provbot_bot_{uuid.uuid4().hex[:10]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh bot database on each backend (PostgreSQL skipped unless PROVBOT_TEST_POSTGRES_URL is set)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bot.db'}"
    url = request.getfixturevalue("_pg_database")
    if url is None:
        pytest.skip("PROVBOT_TEST_POSTGRES_URL is not set")
    from provbot.bot.db.database import Database

    db = Database(url)
    db.migrate()
    with db.engine.begin() as conn:
        for table in BOT_TABLES:
            conn.execute(
                text(f"DROP TABLE IF EXISTS {table}" if table == "bot_scheduler_jobs" else f"DELETE FROM {table}")
            )
    db.dispose()
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bot.db'}"


@pytest.fixture
def hub(localhub):  # noqa: ANN001 - the localhub fixture's type lives in tests.support
    """The per-test local Hub with the bot's token and three users (alice, mallory, mod)."""
    localhub.add_token(BOT_TOKEN, "provbot")
    for user, token in USERS.items():
        localhub.add_token(token, user)
    return localhub


@pytest.fixture
def scanner() -> ScriptedScanner:
    return ScriptedScanner()


@pytest.fixture
def service(hub, db_url, scanner):  # noqa: ANN001, ANN201
    """A started service (review mode, scripted scanner) with the local Hub's webhook pointing at it."""
    from provbot.bot.service.runner import BotService

    hub.add_repo("lab/base", model_files(seed=1))
    hub.add_repo("lab/tuned", model_files(seed=2, base_model=["lab/base"], relation="finetune"))
    settings = bot_settings(hub.url, db_url, candidates=["lab/base", "lab/tuned"])
    ctx = build_ctx(settings, scanner)
    svc = BotService(ctx, port=0, schedule=False).start()
    hub.add_webhook(f"{svc.url}/webhook", WEBHOOK_SECRET)
    try:
        yield svc
    finally:
        svc.stop()
