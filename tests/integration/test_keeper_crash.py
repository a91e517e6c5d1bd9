"""A keeper killed mid-send never double-sends: on SQLite and on PostgreSQL.

* killed (SIGKILL) after broadcasting, before the receipt: on restart it recognises the mined
  transaction and sends nothing new;
* crashed after signing, before broadcasting: on restart it broadcasts the journaled bytes
  (the same transaction hash) once re-decided against the current state, and the vault is
  rebalanced once;
* killed with a batch pending, the node forgets it and the price comes back (issue 10 item 1):
  on restart the stale batch is not re-broadcast but cancelled on its nonce, and no vault's
  hedge moves.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ForkedWorld
from keeper_support import keeper_settings, reached, spawn_keeper, start_keeper, wait_until
from sqlalchemy import create_engine, text

from keeper.store import JournalEntry, JournalState, Store, TxKind
from keeper.tx.sender import Sender

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema (dropped afterwards)."""
    schema = f"k_{uuid.uuid4().hex[:12]}"
    try:
        engine = create_engine(PG, connect_args={"connect_timeout": 2})
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - any failure: the server is not there
        pytest.skip(f"PostgreSQL at {PG} unreachable: {exc}")
    yield f"{PG}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keeper.sqlite'}"
    else:
        yield from postgres_schema_url()


def rebalances(store: Store) -> list[JournalEntry]:
    return [e for e in store.entries_in(list(JournalState), None) if e.kind == TxKind.REBALANCE]


def move_out_of_band(world: ForkedWorld, governance: Any) -> None:
    """Past the straddle's band (about $4 of spot for it), inside every hard limit."""
    world.set_price(world.feed.latestRoundData()[1] / 1e8 + 7, governance)


def test_killed_after_broadcast_recognises_the_mined_transaction(
    db_url: str,
    rpc_url: str,
    fresh_world: ForkedWorld,
    keeper_key: str,
    governance: Any,
    chain: Any,
    tmp_path: Path,
) -> None:
    log = tmp_path / "keeper.log"
    store = Store(db_url)
    proc = spawn_keeper(rpc_url, fresh_world.manifest_file, db_url, log, private_key=keeper_key)
    chain.provider.auto_mine = False
    try:
        chain.mine()
        head = chain.blocks.head.number
        wait_until(
            "the first block",
            reached(store, head),
            proc,
            log,
        )
        move_out_of_band(fresh_world, governance)
        chain.mine()  # the oracle round; the keeper decides and broadcasts, nothing mines it
        wait_until(
            "a sent rebalance",
            lambda: any(e.state == JournalState.SENT for e in rebalances(store)),
            proc,
            log,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        (sent,) = rebalances(store)
        chain.mine()  # the transaction is mined while the keeper is down
    finally:
        chain.provider.auto_mine = True
        if proc.poll() is None:
            proc.kill()
    receipt = chain.provider.web3.eth.get_transaction_receipt(sent.tx_hash)
    assert receipt["status"] == 1
    proc = spawn_keeper(rpc_url, fresh_world.manifest_file, db_url, log, private_key=keeper_key)
    try:
        chain.mine()
        wait_until(
            "the restarted keeper to see the receipt",
            lambda: store.entry(sent.id).state == JournalState.MINED,
            proc,
            log,
        )
        chain.mine()
        head = chain.blocks.head.number
        wait_until(
            "one more block",
            reached(store, head),
            proc,
            log,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert [e.id for e in rebalances(store)] == [sent.id], "nothing was sent twice"
    assert "hedge verified" in log.read_text()


class Crash(BaseException):
    """The process dies here (a BaseException: nothing in the keeper catches it)."""


def test_crash_after_signing_rebroadcasts_the_same_bytes(
    db_url: str,
    rpc_url: str,
    fresh_world: ForkedWorld,
    keeper_key: str,
    governance: Any,
    chain: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running = start_keeper(
        keeper_settings(rpc_url, fresh_world.manifest_file, db_url, private_key=keeper_key)
    )
    running.tick(chain)
    move_out_of_band(fresh_world, governance)

    async def die(self: Sender, entry: JournalEntry) -> JournalEntry:
        raise Crash

    monkeypatch.setattr(Sender, "broadcast", die)
    with pytest.raises(Crash):
        running.tick(chain)
    monkeypatch.undo()
    running.stop()
    store = Store(db_url)
    (signed,) = rebalances(store)
    assert signed.state == JournalState.SIGNED and signed.raw_tx
    log = tmp_path / "keeper.log"
    proc = spawn_keeper(rpc_url, fresh_world.manifest_file, db_url, log, private_key=keeper_key)
    try:
        wait_until(
            "the journaled bytes to be mined",
            lambda: store.entry(signed.id).state in (JournalState.SENT, JournalState.MINED),
            proc,
            log,
        )
        chain.mine()
        wait_until(
            "the receipt", lambda: store.entry(signed.id).state == JournalState.MINED, proc, log
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    receipt = chain.provider.web3.eth.get_transaction_receipt(signed.tx_hash)
    assert receipt["status"] == 1  # the very transaction signed before the crash
    assert [e.id for e in rebalances(store)] == [signed.id]


def test_a_stale_batch_is_not_re_mined_after_a_restart(
    db_url: str,
    rpc_url: str,
    fresh_world: ForkedWorld,
    keeper_key: str,
    governance: Any,
    chain: Any,
) -> None:
    """Issue 10 item 1: killed with a batch pending; while it is down the node forgets the
    transaction and the price comes back. At restart the journal does not re-broadcast the
    signed bytes: the batch is re-decided (stale), cancelled on its nonce, no hedge moves."""
    settings = keeper_settings(rpc_url, fresh_world.manifest_file, db_url, private_key=keeper_key)
    vaults = list(fresh_world.vaults.values())
    original = fresh_world.feed.latestRoundData()[1]
    running = start_keeper(settings)
    chain.provider.auto_mine = False
    try:
        running.tick(chain)
        move_out_of_band(fresh_world, governance)
        running.tick(chain)  # the round is mined; the keeper decides and broadcasts
        (pending,) = rebalances(running.store)
        assert pending.state == JournalState.SENT
        running.stop()  # killed
        weth = {v.address: fresh_world.weth.balanceOf(v) for v in vaults}
        chain.provider.make_request("anvil_dropTransaction", [pending.tx_hash])
        fresh_world.feed.setAnswer(original, sender=governance)  # the price comes back
        running = start_keeper(settings)  # reconciles: nothing decided yet, nothing sent
        assert running.store.entry(pending.id).state == JournalState.SENT
        for _ in range(3):
            running.tick(chain)
    finally:
        chain.provider.auto_mine = True
    store = running.store
    group = store.entries_for_nonce(pending.sender, pending.nonce or 0)
    (mined,) = [e for e in group if e.state == JournalState.MINED]
    assert mined.kind == TxKind.CANCEL
    assert store.entry(pending.id).state == JournalState.CANCELLED
    assert {v.address: fresh_world.weth.balanceOf(v) for v in vaults} == weth
    running.stop()
