"""Small portable SQL helpers shared by the store modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError


def insert_ignore(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert a row unless its primary key exists; True when a row was inserted.

    SQLite and PostgreSQL use ``ON CONFLICT DO NOTHING``; other dialects a savepoint.
    """
    name = conn.dialect.name
    if name == "sqlite":
        result = conn.execute(sqlite.insert(table).values(**values).on_conflict_do_nothing())
        return result.rowcount == 1
    if name == "postgresql":  # rowcount is -1 through psycopg here: ask for the row back
        key = next(iter(table.primary_key.columns))
        statement = postgresql.insert(table).values(**values).on_conflict_do_nothing()
        return conn.execute(statement.returning(key)).first() is not None
    try:
        with conn.begin_nested():
            conn.execute(insert(table).values(**values))
    except IntegrityError:
        return False
    return True
