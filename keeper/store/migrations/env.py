"""Alembic's environment: migrations run on the connection the keeper hands over
(``keeper.store.migrations``), with the keeper's version table."""

from __future__ import annotations

from alembic import context

from keeper.store.migrations import VERSION_TABLE, schema_of

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    version_table=VERSION_TABLE,
    version_table_schema=schema_of(connection),
)
with context.begin_transaction():
    context.run_migrations()
