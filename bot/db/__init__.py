"""The database shared by the index and the service: one declarative ``Base``, engines, migrations.

SQLite is the default (``provbot.db`` in the settings' ``data_dir``); PostgreSQL is the production choice. Both run the
same Alembic migrations (``bot/db/migrations/``), which ``migrate(url)`` applies programmatically,
so a fresh database is usable with no manual step.

Each module that owns tables defines them in ``bot/db/models_<part>.py`` on :data:`Base` and adds an
Alembic revision (``0001_index`` for the index, ``0002_bot`` for the service).

>>> engine = make_engine("sqlite://")          # in-memory, for a quick look
>>> migrate(engine)                             # creates every table, records the revision
>>> with session_scope(engine) as session:
...     _ = session.execute(text("select 1")).scalar_one()
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import StaticPool

from provbot.detectors.errors import ConfigError, ProvbotError

__all__ = ["Base", "DatabaseError", "make_engine", "session_scope", "migrate", "text", "MIGRATIONS_DIR"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Stable constraint names, so migrations can refer to them on every backend.
_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every provbot table."""

    metadata = MetaData(naming_convention=_NAMING)


class DatabaseError(ProvbotError):
    """The database could not be opened, migrated or written."""


# SQLite busy timeout: concurrent writers wait for each other instead of failing at once.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url`` (SQLite or PostgreSQL), ready for concurrent writers.

    For SQLite files the parent folder is created, the journal is WAL (readers never block the
    writer), and every write transaction starts with ``BEGIN IMMEDIATE`` when the session asks for
    it (:func:`session_scope` with ``write=True``), so two processes adding models queue on the
    busy timeout rather than failing on a lock upgrade.

    >>> make_engine("sqlite://").dialect.name
    'sqlite'
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from None
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, echo=echo, pool_pre_ping=True, future=True)
        except (ArgumentError, ImportError) as exc:
            raise ConfigError(f"cannot use database URL {parsed.render_as_string(hide_password=True)}: {exc}") from None

    database = parsed.database or ""
    memory = database in ("", ":memory:") or database.startswith("file::memory:")
    kwargs: dict = {"echo": echo, "future": True}
    if memory:
        # One shared connection, or each checkout would see its own empty database.
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions defer it past reads).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn) -> None:  # pragma: no cover - trivial
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

    return engine


@contextlib.contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on error.

    ``write=True`` takes SQLite's write lock at the start of the transaction (``BEGIN IMMEDIATE``),
    which keeps read-then-write transactions of concurrent processes from failing with
    "database is locked"; PostgreSQL ignores it.
    """
    bind = engine.execution_options(sqlite_begin="BEGIN IMMEDIATE") if write else engine
    session = Session(bind=bind, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise DatabaseError(f"database error: {_one_line(exc)}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def migrate(target: str | Engine) -> None:
    """Bring the database at ``target`` (URL or engine) to the newest revision; safe to call often.

    Concurrent callers are serialised (a file lock beside a SQLite file, an advisory lock on
    PostgreSQL), so two processes opening a fresh database do not both create the tables.
    """
    from alembic import command
    from alembic.config import Config

    engine = make_engine(target) if isinstance(target, str) else target
    key = engine.url.render_as_string(hide_password=False) + f"#{id(engine) if _is_memory(engine) else ''}"
    with _migrate_lock:
        if key in _migrated:
            return
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("path_separator", "os")
        with _file_lock(engine), engine.begin() as connection:
            cfg.attributes["connection"] = connection
            try:
                command.upgrade(cfg, "head")
            except SQLAlchemyError as exc:
                raise DatabaseError(f"cannot migrate database: {_one_line(exc)}") from exc
        _migrated.add(key)


def _is_memory(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite" and (engine.url.database or ":memory:") in ("", ":memory:")


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name != "sqlite" or _is_memory(engine):
        yield
        return
    lock_path = Path(str(engine.url.database)).expanduser().with_suffix(".migrate.lock")
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _one_line(exc: BaseException) -> str:
    # SQLAlchemy messages carry the SQL and a URL to its docs: keep the first line, which says what failed.
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return first[0] if first else type(exc).__name__
