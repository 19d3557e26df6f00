"""Engine and sessions for the bot's tables, on SQLite (default) or PostgreSQL.

A thin layer over :mod:`provbot.bot.db` (``make_engine``, ``migrate``): the service opens one ``Database``
and every module takes it as a parameter.

>>> db = Database("sqlite://")
>>> db.migrate()
>>> with db.session() as s:
...     _ = s.execute(text("select 1")).scalar()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from provbot.bot.db import make_engine
from provbot.bot.db import migrate as _migrate

__all__ = ["Database", "text"]


class Database:
    """An engine plus sessions that commit on success and roll back on error.

    ``session(write=True)`` takes SQLite's write lock at BEGIN, so read-then-write transactions of
    concurrent processes wait on the busy timeout instead of failing; PostgreSQL ignores it.
    """

    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        self._write_bind = self.engine.execution_options(sqlite_begin="BEGIN IMMEDIATE")

    @property
    def write_engine(self) -> Engine:
        """The engine whose transactions start with SQLite's write lock (for libraries that take an engine)."""
        return self._write_bind

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- where SQLite and PostgreSQL differ (kept here, and in make_engine's connection setup) ------
    def insert_ignoring(self, table: Any, values: dict[str, Any], unique: Sequence[str]) -> Insert:
        """``INSERT ... ON CONFLICT (unique) DO NOTHING`` in this database's dialect.

        Both backends speak it, through different SQLAlchemy constructs: this is the one place that
        chooses between them.
        """
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return insert(table).values(**values).on_conflict_do_nothing(index_elements=list(unique))

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        session = Session(bind=self._write_bind if write else self.engine, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (index and bot tables)."""
        _migrate(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
