"""Alembic environment: runs on the connection `Store.migrate` hands over."""

from __future__ import annotations

from alembic import context

from rules_engine.store._schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table_schema=context.config.attributes.get("schema"),
)
with context.begin_transaction():
    context.run_migrations()
