"""Alembic migrations of the provbot database (applied by bot.db.migrate)."""
