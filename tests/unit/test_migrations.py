"""Schema migrations: a new database starts at head, an old one is refused until
``keeper db upgrade`` migrates it (release 0.1's databases included), its rows kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from test_store import Backend, block, why_postgres_unreachable

from keeper.cli import main as keeper_cli
from keeper.errors import ConfigError
from keeper.store import Store, migrations


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgres":
        reason = why_postgres_unreachable()
        if reason is not None:
            pytest.skip(reason)
    made = Backend(request.param, tmp_path)
    yield made
    made.close()


def sql(backend: Backend, statement: str) -> str:
    """``statement`` with its keeper_* tables in the backend's schema."""
    return (
        statement.replace("keeper_", f'"{backend.schema}".keeper_') if backend.schema else statement
    )


def as_release_0_1(backend: Backend, store: Store) -> None:
    """Leave the database as release 0.1 made it: no version table, no lease table."""
    with store._tx() as conn:
        conn.execute(text(sql(backend, "DROP TABLE keeper_alembic_version")))
        conn.execute(text(sql(backend, "DROP TABLE keeper_lease")))


def test_a_new_database_starts_at_the_newest_revision(backend: Backend) -> None:
    store = backend.store()
    with store._tx() as conn:
        assert migrations.state(conn) == (migrations.head(), True)


def test_a_release_0_1_database_is_refused_then_upgraded_with_its_rows(backend: Backend) -> None:
    store = backend.store()
    store.record_block(block(7))
    as_release_0_1(backend, store)
    with pytest.raises(ConfigError, match=r"made before schema migrations.*keeper db upgrade"):
        backend.store()
    before, after = migrations.upgrade(store._engine)
    assert (before, after) == (None, migrations.head())
    assert backend.store().last_block() == block(7)


def test_a_database_behind_is_refused_and_keeper_db_upgrade_migrates_it(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = backend.store()
    with store._tx() as conn:
        conn.execute(text(sql(backend, "DROP TABLE keeper_lease")))
        conn.execute(text(sql(backend, "UPDATE keeper_alembic_version SET version_num = '0001'")))
    with pytest.raises(ConfigError, match="at revision 0001; this keeper needs revision 0002"):
        backend.store()
    monkeypatch.setenv("KEEPER_DB_URL", backend.url)
    if backend.schema:
        monkeypatch.setenv("KEEPER_DB_SCHEMA", backend.schema)
    assert keeper_cli(["db", "upgrade"]) == 0
    assert "0001 -> 0002" in capsys.readouterr().out
    assert backend.store().take_lease("a", 20).epoch == 1  # the lease table is back


def test_tables_that_are_not_a_keepers_known_schema_are_not_guessed_at(backend: Backend) -> None:
    store = backend.store()
    as_release_0_1(backend, store)
    with store._tx() as conn:
        conn.execute(
            text(sql(backend, "UPDATE keeper_meta SET value = '7' WHERE key = 'schema_version'"))
        )
    with pytest.raises(ConfigError, match=r"not release 0\.1's"):
        migrations.upgrade(store._engine)
