"""bot.db: engines, sessions and the programmatic Alembic migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from provbot.bot.db import DatabaseError, make_engine, migrate, session_scope
from provbot.detectors.errors import ConfigError

INDEX_TABLES = {"index_models", "index_sketches", "index_crawl_state", "index_failures"}


def test_migrate_creates_index_tables_and_records_revision(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # idempotent
    assert INDEX_TABLES <= set(inspect(engine).get_table_names())
    with session_scope(engine) as session:
        versions = [v for (v,) in session.execute(text("select version_num from alembic_version"))]
    # 0001_index, or a later revision that builds on it (the service's 0002_bot).
    assert versions and versions[0] != ""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", "bot/db/migrations")
    script = ScriptDirectory.from_config(cfg)
    assert "0001_index" in {r.revision for r in script.walk_revisions()}
    assert versions[0] == script.get_current_head()
    engine.dispose()


def test_sqlite_engine_creates_parent_dirs_and_uses_wal(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "x.db"
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    assert db.parent.is_dir()


def test_session_scope_rolls_back_and_reports_one_line(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    with pytest.raises(DatabaseError) as err:
        with session_scope(engine, write=True) as session:
            session.execute(
                text("insert into index_crawl_state(name, state, updated_at) values ('a', '{}', '2026-01-01')")
            )
            session.execute(
                text("insert into index_crawl_state(name, state, updated_at) values ('a', '{}', '2026-01-01')")
            )
    assert "\n" not in str(err.value) and "UNIQUE" in str(err.value).upper()
    with session_scope(engine) as session:  # the first insert was rolled back with the second
        assert session.execute(text("select count(*) from index_crawl_state")).scalar() == 0


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        make_engine("not a url at all")
