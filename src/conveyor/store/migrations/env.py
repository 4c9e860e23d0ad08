"""Alembic environment: the URL comes from the caller (conveyor.store.db.migrate)."""

from __future__ import annotations

from alembic import context

from conveyor.store.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    from sqlalchemy import create_engine

    connection = create_engine(config.get_main_option("sqlalchemy.url") or "").connect()
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
