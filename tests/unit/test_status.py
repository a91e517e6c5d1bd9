"""``keeper status`` renders what the store holds: last block, decisions, transactions in flight."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from test_store import (
    PG_URL,
    SENDER,
    VAULT_A,
    VAULT_B,
    block,
    decision,
    sent_entry,
    why_postgres_unreachable,
)

from keeper import cli, status
from keeper.core.types import Action
from keeper.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = Store(f"sqlite:///{tmp_path / 'k.sqlite'}")
    yield made
    made.close()


def test_an_empty_store_says_so(store: Store) -> None:
    assert status.render(store).splitlines() == [
        "no block processed yet",
        "",
        "no decisions stored yet",
        "",
        "no transaction in flight",
    ]


def test_decisions_and_a_transaction_waiting_for_its_receipt(store: Store) -> None:
    store.commit_block(
        block(13),
        [
            decision(VAULT_A, 13, Action.REBALANCE, delta=1.25, deviation=0.75, band=0.5),
            decision(VAULT_B, 13, delta=0.1, deviation=0.1, band=0.5),
        ],
    )
    store.resync_nonces(SENDER, 4)
    entry_id, nonce = sent_entry(store, VAULT_A)  # sent at block 10
    lines = status.render(store).splitlines()
    assert lines[0] == f"last processed block 13 ({block(13).hash})"
    (row_a,) = [line for line in lines if line.startswith(VAULT_A)]
    assert row_a.split()[:6] == [VAULT_A, "13", "rebalance", "1.2500", "0.7500", "0.5000"]
    assert any(line.startswith(VAULT_B) and " hold " in line for line in lines)
    assert "transactions in flight: 1" in lines
    (tx_row,) = [line for line in lines if line.split()[:1] == [str(entry_id)]]
    assert tx_row.split()[:6] == [str(entry_id), "rebalance", "sent", str(nonce), "3.00", "3"]
    assert tx_row.rstrip().endswith(f"0x{nonce:032x}{0:032x}")


def _status_cli(monkeypatch: pytest.MonkeyPatch, **env: str) -> int:
    for key in [k for k in os.environ if k.startswith("KEEPER_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(f"KEEPER_{key.upper()}", value)
    return cli.main(["status"])


def test_a_schema_on_sqlite_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'k.sqlite'}"
    Store(db_url).close()
    assert _status_cli(monkeypatch, db_url=db_url, db_schema="keeper_main") == 2
    assert "KEEPER_DB_SCHEMA: a schema needs a server database" in capsys.readouterr().err


@pytest.mark.postgres
def test_status_reads_the_configured_postgres_schema(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if (reason := why_postgres_unreachable()) is not None:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        assert _status_cli(monkeypatch, db_url=PG_URL, db_schema=schema) == 0
        assert capsys.readouterr().out.startswith("no block processed yet")
        engine = create_engine(PG_URL)
        try:
            tables = inspect(engine).get_table_names(schema=schema)
        finally:
            engine.dispose()
        assert {"keeper_meta", "keeper_journal", "keeper_blocks"} <= set(tables)
    finally:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
