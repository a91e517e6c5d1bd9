"""What a keeper database belongs to: the schema version it was made with, the chain it serves.

A database is never silently shared across schema versions or chains: a journal of another
chain's nonces, or tables laid out by another release, would make the keeper act on records
that are not what they look like. Both are written by the first keeper to open the database
and checked by every later one.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from keeper.errors import ConfigError
from keeper.store.sql import insert_ignore
from keeper.store.tables import meta

# Bump on any change to keeper.store.tables; there are no automatic migrations.
SCHEMA_VERSION = 1

_SCHEMA = "schema_version"
_CHAIN = "chain_id"


def _claim(conn: Connection, key: str, value: str) -> str:
    """Write ``value`` unless ``key`` is set; the value the database holds now."""
    insert_ignore(conn, meta, {"key": key, "value": value})
    held = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one()
    return str(held)


def check_schema(conn: Connection) -> None:
    held = _claim(conn, _SCHEMA, str(SCHEMA_VERSION))
    if held != str(SCHEMA_VERSION):
        raise ConfigError(
            f"KEEPER_DB_URL: the database holds keeper schema version {held}, this keeper "
            f"uses version {SCHEMA_VERSION}; migrate it, or point KEEPER_DB_URL at a new "
            "database once nothing is in flight"
        )


def bind_chain(conn: Connection, chain_id: int) -> None:
    held = _claim(conn, _CHAIN, str(chain_id))
    if held != str(chain_id):
        raise ConfigError(
            f"KEEPER_DB_URL: the database journals chain {held}, the node is on chain "
            f"{chain_id}; use one database (or KEEPER_DB_SCHEMA) per chain"
        )
