"""Alembic revisions: 0001_index (index tables), 0002_bot (service tables)."""
