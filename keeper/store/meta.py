"""What a keeper database belongs to: the chain it serves (its schema revision is Alembic's,
``keeper.store.migrations``).

A database is never silently shared across chains: a journal of another chain's nonces would
make the keeper act on records that are not what they look like. The chain is written by the
first keeper to use the database and checked by every later one.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from keeper.errors import ConfigError
from keeper.store.sql import insert_ignore
from keeper.store.tables import meta

_CHAIN = "chain_id"


def _claim(conn: Connection, key: str, value: str) -> str:
    """Write ``value`` unless ``key`` is set; the value the database holds now."""
    insert_ignore(conn, meta, {"key": key, "value": value})
    held = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one()
    return str(held)


def bind_chain(conn: Connection, chain_id: int) -> None:
    held = _claim(conn, _CHAIN, str(chain_id))
    if held != str(chain_id):
        raise ConfigError(
            f"KEEPER_DB_URL: the database journals chain {held}, the node is on chain "
            f"{chain_id}; use one database (or KEEPER_DB_SCHEMA) per chain"
        )


def bound_chain(conn: Connection) -> int | None:
    held = conn.execute(select(meta.c.value).where(meta.c.key == _CHAIN)).scalar()
    return None if held is None else int(held)
