"""Fixtures of the index tests: an empty database on SQLite and (when available) PostgreSQL.

PostgreSQL runs when ``PROVBOT_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it); each test gets its
own schema (dropped afterwards), so concurrent runs on one server never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provbot.bot.index.store import IndexStore

PG_URL = os.environ.get("PROVBOT_TEST_POSTGRES_URL")


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'index.db'}"
        return
    if not PG_URL:
        pytest.skip("PROVBOT_TEST_POSTGRES_URL is not set")
    from sqlalchemy import create_engine, text

    schema = f"provbot_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[IndexStore]:
    s = IndexStore(db_url)
    yield s
    s.engine.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> IndexStore:
    return IndexStore(f"sqlite:///{tmp_path / 'index.db'}")


@pytest.fixture(scope="session")
def family_paths(model_zoo) -> dict[str, str]:
    """The tiny Llama family (base, three fine-tunes, an unrelated model) as folder paths."""
    return {name: str(model_zoo.path(f"llama_{name}")) for name in ("base", "a", "b", "c", "unrelated")}
