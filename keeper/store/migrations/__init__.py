"""Schema migrations (Alembic): the keeper's tables are versioned, never silently recreated.

* A new, empty database is created at the newest revision when a keeper first opens it.
* A database at an older revision (or made before migrations, by release 0.1's
  ``create_all``) is refused with a message saying to run ``keeper db upgrade``: a database
  that holds a nonce journal is migrated on purpose, not as a side effect of a restart.
* ``keeper db upgrade`` migrates it (a pre-migration database is first stamped at the
  baseline, after checking it is that schema).

PostgreSQL: the check and the migration run under a transaction-level advisory lock, so
instances starting at once do not race to create the tables. Alembic's documentation:
https://alembic.sqlalchemy.org/en/latest/api/commands.html (running commands from code).
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, select, text

from keeper.errors import ConfigError
from keeper.store.tables import meta

logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per step is noise at start

HERE = Path(__file__).resolve().parent
VERSION_TABLE = "keeper_alembic_version"
BASELINE = "0001"
_LOCK_KEY = 0x6B656570  # "keep": the advisory lock of migrations


def _config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = conn
    return config


def head() -> str:
    """The newest revision this keeper knows."""
    found = ScriptDirectory(str(HERE)).get_current_head()
    assert found is not None
    return found


def schema_of(conn: Connection) -> str | None:
    """``KEEPER_DB_SCHEMA`` as the store's engine carries it (its schema translate map)."""
    found = conn.get_execution_options().get("schema_translate_map", {}).get(None)
    return None if found is None else str(found)


def current(conn: Connection) -> str | None:
    """The database's revision; None when it has no version table."""
    opts = {"version_table": VERSION_TABLE, "version_table_schema": schema_of(conn)}
    return MigrationContext.configure(conn, opts=opts).get_current_revision()


def _lock(conn: Connection) -> None:
    """PostgreSQL: one migrating instance at a time; statements Alembic writes without a
    schema go to ``KEEPER_DB_SCHEMA`` (tables go there through the schema translate map)."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    schema = schema_of(conn)
    if schema is not None:
        conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))


def _has_keeper_tables(conn: Connection) -> bool:
    names = inspect(conn).get_table_names(schema=schema_of(conn))
    return any(n.startswith("keeper_") and n != VERSION_TABLE for n in names)


def state(conn: Connection) -> tuple[str | None, bool]:
    """(revision, whether any keeper table exists)."""
    return current(conn), _has_keeper_tables(conn)


def ensure_current(engine: Engine) -> None:
    """Create a new database at head; refuse (``ConfigError``) one that is not at head."""
    with engine.begin() as conn:
        _lock(conn)
        revision, populated = state(conn)
        if revision == head():
            return
        if revision is None and not populated:
            command.upgrade(_config(conn), "head")
            return
    raise ConfigError(_behind_message(revision))


def _behind_message(revision: str | None) -> str:
    held = "made before schema migrations" if revision is None else f"at revision {revision}"
    return (
        f"KEEPER_DB_URL: the database is {held}; this keeper needs revision {head()}: run "
        "`keeper db upgrade` (with no keeper running on it; back it up first)"
    )


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to head (stamping a pre-migration database at the baseline first); the
    revisions before and after."""
    with engine.begin() as conn:
        _lock(conn)
        revision, populated = state(conn)
        config = _config(conn)
        if revision is None and populated:
            _check_pre_migration(conn)
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
        return revision, head()


def _check_pre_migration(conn: Connection) -> None:
    """A database made by release 0.1 records schema version 1 in keeper_meta."""
    held = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    if held != "1":
        raise ConfigError(
            f"KEEPER_DB_URL: the keeper tables there are not release 0.1's (schema version "
            f"{held!r}); refusing to guess how to migrate them"
        )
