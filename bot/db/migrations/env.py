"""Alembic environment: run programmatically by :func:`provbot.bot.db.migrate` (no alembic.ini needed).

The caller passes an open connection in ``config.attributes["connection"]``. On PostgreSQL a
transaction-scoped advisory lock serialises concurrent migrators.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

import provbot.bot.db.models_index  # noqa: F401  (register the index tables on Base.metadata)
from provbot.bot.db import Base

try:  # the service's tables arrive with revision 0002_bot
    import provbot.bot.db.models_bot  # noqa: F401
except ModuleNotFoundError:
    pass

# Any constant works; it only has to be the same for every provbot process.
_PG_MIGRATION_LOCK = 0x70726F76


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from provbot.bot.db import make_engine

        url = context.config.get_main_option("sqlalchemy.url")
        with make_engine(url).begin() as connection:
            _run(connection)
        return
    _run(connection)


def _run(connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    context.configure(
        connection=connection, target_metadata=Base.metadata, render_as_batch=connection.dialect.name == "sqlite"
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    try:
        offline = context.is_offline_mode()
    except NameError:  # imported outside Alembic (e.g. doctest collection): nothing to run
        return
    if offline:  # pragma: no cover - provbot never generates SQL scripts
        raise SystemExit("provbot migrations run online only (bot.db.migrate)")
    run_migrations_online()


_main()
