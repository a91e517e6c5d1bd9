"""The store on SQLite and on PostgreSQL: the same tests, parametrised over the backend."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from keeper.core.types import Action, BlockRef, Decision
from keeper.errors import ConfigError, JournalConflict
from keeper.store import JournalState, SignedTx, Store, TxIntent, TxKind

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SENDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
VAULT_A = "0x00000000000000000000000000000000000000aa"
VAULT_B = "0x00000000000000000000000000000000000000bb"
S = JournalState


def why_postgres_unreachable() -> str | None:
    """None when the server answers, else why not."""
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip with the reason
        return f"PostgreSQL at {PG_URL} unreachable: {exc}"
    return None


class Backend:
    """Makes stores on one database; PostgreSQL stores live in a schema dropped at the end."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.schema = f"t_{uuid.uuid4().hex[:16]}" if kind == "postgres" else None
        self.url = PG_URL if kind == "postgres" else f"sqlite:///{tmp_path / 'keeper.sqlite'}"
        self.stores: list[Store] = []

    def store(self, **kwargs: object) -> Store:
        store = Store(self.url, schema=self.schema, **kwargs)  # type: ignore[arg-type]
        self.stores.append(store)
        return store

    def close(self) -> None:
        for store in self.stores:
            store.close()
        if self.schema is not None:
            engine = create_engine(PG_URL)
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgres":
        reason = why_postgres_unreachable()
        if reason is not None:
            pytest.skip(reason)
    made = Backend(request.param, tmp_path)
    yield made
    made.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store()


def block(number: int, fork: str = "a") -> BlockRef:
    return BlockRef(
        number=number,
        hash=f"0x{fork}{number:063x}",
        parent_hash=f"0x{fork}{number - 1:063x}",
        timestamp=1_700_000_000 + 12 * number,
        base_fee_wei=10**9 + number,
    )


def decision(vault: str, number: int, action: Action = Action.HOLD, **kw: object) -> Decision:
    return Decision(
        vault=vault,
        block_number=number,
        block_hash=block(number).hash,
        action=action,
        reason="test",
        **kw,  # type: ignore[arg-type]
    )


def intent(*vaults: str, sender: str = SENDER) -> TxIntent:
    return TxIntent(
        kind=TxKind.REBALANCE,
        sender=sender,
        to="0x" + "12" * 20,
        data=b"\x01\x02",
        value_wei=0,
        vaults=vaults,
        payload={"decision_block": 7},
    )


def signed(nonce: int, tag: int = 0) -> SignedTx:
    return SignedTx(
        nonce=nonce,
        chain_id=31337,
        gas_limit=21_000,
        max_fee_wei=3 * 10**9 + tag,
        priority_fee_wei=10**9 + tag,
        tx_hash=f"0x{nonce:032x}{tag:032x}",
        raw_tx=bytes([nonce % 256, tag % 256]) * 8,
    )


def sent_entry(store: Store, *vaults: str) -> tuple[int, int]:
    """An entry taken through intent -> signed -> sent; returns (id, nonce)."""
    entry = store.create_intent(intent(*vaults))
    nonce = store.claim_nonce(entry.id)
    store.mark_signed(entry.id, signed(nonce))
    store.mark_sent(entry.id, at_block=10)
    return entry.id, nonce


# --- blocks and decisions -------------------------------------------------------------


def test_blocks_record_read_and_keep_a_bounded_window(backend: Backend) -> None:
    store = backend.store(block_history=5)
    assert store.last_block() is None
    for n in range(1, 11):
        store.record_block(block(n))
    assert store.last_block() == block(10)
    assert store.block_at(7) == block(7)
    assert store.block_at(5) is None  # older than the 5-block window
    assert [b.number for b in store.recent_blocks(3)] == [8, 9, 10]
    assert [b.number for b in store.recent_blocks(100)] == [6, 7, 8, 9, 10]


def test_recording_a_block_is_idempotent_but_a_different_hash_is_refused(store: Store) -> None:
    store.record_block(block(3))
    store.record_block(block(3))
    with pytest.raises(JournalConflict):
        store.record_block(block(3, fork="b"))
    store.forget_blocks_from(3)
    store.record_block(block(3, fork="b"))
    assert store.block_at(3) == block(3, fork="b")


def test_commit_block_stores_block_and_decisions_together(store: Store) -> None:
    big = -(10**25) - 7  # more than 64 bits: must come back exactly
    store.commit_block(
        block(5),
        [
            decision(VAULT_A, 5, Action.REBALANCE, trade_wei=big, delta=1.5, urgent=True),
            decision(VAULT_B, 5, spot_answer=2_000 * 10**8),
        ],
    )
    got = {d.vault: d for d in store.decisions_for_block(5)}
    assert got[VAULT_A].trade_wei == big and got[VAULT_A].urgent and got[VAULT_A].delta == 1.5
    assert got[VAULT_A].action is Action.REBALANCE
    assert got[VAULT_B].spot_answer == 2_000 * 10**8
    assert store.last_block() == block(5)


def test_commit_block_refuses_decisions_of_another_block_and_stores_nothing(store: Store) -> None:
    with pytest.raises(JournalConflict):
        store.commit_block(block(5), [decision(VAULT_A, 5), decision(VAULT_B, 4)])
    assert store.last_block() is None
    assert store.decisions_for_block(5) == []


def test_latest_decisions_are_the_newest_per_vault(store: Store) -> None:
    store.commit_block(block(1), [decision(VAULT_A, 1), decision(VAULT_B, 1)])
    store.commit_block(block(2), [decision(VAULT_A, 2, Action.REBALANCE)])
    store.commit_block(block(2), [decision(VAULT_A, 2, Action.SKIP)])  # re-commit replaces
    latest = {d.vault: d for d in store.latest_decisions()}
    assert latest[VAULT_A].block_number == 2 and latest[VAULT_A].action is Action.SKIP
    assert latest[VAULT_B].block_number == 1
    assert len(store.decisions_for_block(2)) == 1


def test_forgetting_blocks_forgets_their_decisions(store: Store) -> None:
    for n in (1, 2, 3):
        store.commit_block(block(n), [decision(VAULT_A, n)])
    store.forget_blocks_from(2)
    assert store.last_block() == block(1)
    assert store.decisions_for_block(2) == []
    assert [d.block_number for d in store.latest_decisions()] == [1]


def test_markers(store: Store) -> None:
    assert store.get_markers(VAULT_A) is None
    store.set_markers(VAULT_A, 3, 7)
    store.set_markers(VAULT_A, 4, 7)
    request_nonce, params_version = store.get_markers(VAULT_A) or (-1, -1)
    assert (request_nonce, params_version) == (4, 7)
    assert store.get_markers(VAULT_B) is None


# --- journal state machine ----------------------------------------------------------------


def test_journal_happy_path(store: Store) -> None:
    store.resync_nonces(SENDER, 5)
    entry = store.create_intent(intent(VAULT_A))
    assert entry.state is S.INTENT and entry.nonce is None and entry.root_id == entry.id
    assert entry.vaults == (VAULT_A,) and entry.payload["decision_block"] == 7
    assert store.vault_in_flight(VAULT_A) and not store.vault_in_flight(VAULT_B)
    nonce = store.claim_nonce(entry.id)
    assert nonce == 5
    store.mark_signed(entry.id, signed(nonce))
    assert [e.id for e in store.open_entries()] == [entry.id]
    store.mark_sent(entry.id, at_block=11)
    mined = store.mark_mined(entry.id, 12, block(12).hash, 1)
    assert mined.state is S.MINED and mined.mined_block_hash == block(12).hash
    assert mined.raw_tx == signed(5).raw_tx and mined.sent_at_block == 11
    assert store.open_entries() == [] and not store.vault_in_flight(VAULT_A)
    assert store.next_nonce(SENDER) == 6


def test_a_signed_entry_can_be_cancelled_its_bytes_may_be_on_a_node(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    entry = store.create_intent(intent())
    nonce = store.claim_nonce(entry.id)
    store.mark_signed(entry.id, signed(nonce))
    cancel = store.add_successor(entry.id, TxKind.CANCEL, SENDER, 0, b"", signed(nonce, 1))
    store.mark_sent(cancel.id, 4)
    assert store.entry(entry.id).state is S.CANCELLED
    assert store.entry(entry.id).replaced_by_id == cancel.id


def test_bytes_the_journal_holds_are_refused_as_a_conflict_not_a_unique_violation(
    store: Store,
) -> None:
    store.resync_nonces(SENDER, 0)
    entry = store.create_intent(intent())
    nonce = store.claim_nonce(entry.id)
    store.mark_signed(entry.id, signed(nonce))
    store.mark_sent(entry.id, 1)
    first = store.add_successor(entry.id, TxKind.REBALANCE, SENDER, 0, b"", signed(nonce, 1))
    store.mark_failed(first.id, "replacement underpriced")
    with pytest.raises(JournalConflict, match="exists"):
        store.add_successor(entry.id, TxKind.REBALANCE, SENDER, 0, b"", signed(nonce, 1))
    other = store.create_intent(intent("0x" + "77" * 20))
    store.claim_nonce(other.id)
    with pytest.raises(JournalConflict, match="exists"):
        store.mark_signed(other.id, _same_hash(nonce + 1))


def _same_hash(nonce: int) -> SignedTx:
    """A signature for ``nonce`` whose hash the journal already holds (entry 1's)."""
    return dataclasses.replace(signed(nonce), tx_hash=signed(0).tx_hash)


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((), S.SENT),  # intent -> sent: never signed
        ((), S.MINED),
        (("failed",), S.REPLACED),  # only an open (signed or sent) entry can be replaced
        (("signed", "sent", "mined"), S.REPLACED),
        (("signed", "sent", "mined"), S.DROPPED),
        (("failed",), S.SIGNED),  # failed is terminal
        (("signed", "sent", "dropped"), S.SENT),
    ],
)
def test_illegal_moves_raise(store: Store, path: tuple[str, ...], illegal: JournalState) -> None:
    store.resync_nonces(SENDER, 0)
    entry = store.create_intent(intent())
    nonce = store.claim_nonce(entry.id)
    for step in path:
        if step == "signed":
            store.mark_signed(entry.id, signed(nonce))
        elif step == "sent":
            store.mark_sent(entry.id, 1)
        elif step == "mined":
            store.mark_mined(entry.id, 2, block(2).hash, 1)
        elif step == "dropped":
            store.mark_dropped(entry.id, "test")
        elif step == "failed":
            store.mark_failed(entry.id, "test")
    before = store.entry(entry.id).state
    moves = {
        S.SENT: lambda: store.mark_sent(entry.id, 3),
        S.MINED: lambda: store.mark_mined(entry.id, 3, block(3).hash, 1),
        S.DROPPED: lambda: store.mark_dropped(entry.id, "x"),
        S.SIGNED: lambda: store.mark_signed(entry.id, signed(nonce)),
        S.REPLACED: lambda: store.add_successor(
            entry.id, TxKind.REBALANCE, "0x" + "12" * 20, 0, b"", signed(nonce, 1)
        ),
    }
    with pytest.raises(JournalConflict):
        moves[illegal]()
    assert store.entry(entry.id).state is before


def test_journal_and_sign_is_one_transaction_that_keeps_nothing_when_signing_fails(
    store: Store,
) -> None:
    """The intent, its vaults, its nonce and its bytes are journaled together: a failure
    while signing leaves no entry, the vault free and the nonce free; the next call signs
    at that nonce, told which bytes the journal already holds there."""
    store.resync_nonces(SENDER, 4)

    def broken(nonce: int, taken: frozenset[str]) -> SignedTx:
        raise ValueError("the key is unavailable")

    with pytest.raises(ValueError, match="unavailable"):
        store.journal_and_sign(intent(VAULT_A), broken)
    assert store.entries_in(list(S)) == [] and not store.vaults_in_flight()
    assert store.next_nonce(SENDER) == 4
    asked: list[tuple[int, frozenset[str]]] = []

    def sign(nonce: int, taken: frozenset[str]) -> SignedTx:
        asked.append((nonce, taken))
        return signed(nonce, 1)

    done = store.journal_and_sign(intent(VAULT_A), sign)
    assert done.state is S.SIGNED and done.nonce == 4 and asked == [(4, frozenset())]
    assert store.next_nonce(SENDER) == 5 and store.vaults_in_flight() == {VAULT_A}


def test_journal_and_sign_refuses_a_vault_in_flight_and_keeps_nothing(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    store.journal_and_sign(intent(VAULT_A), lambda nonce, taken: signed(nonce, 1))
    with pytest.raises(JournalConflict, match="in flight"):
        store.journal_and_sign(intent(VAULT_B, VAULT_A), lambda nonce, taken: signed(nonce, 2))
    assert len(store.entries_in(list(S))) == 1 and store.next_nonce(SENDER) == 1


def test_signing_with_another_nonce_than_claimed_is_refused(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    entry = store.create_intent(intent())
    nonce = store.claim_nonce(entry.id)
    with pytest.raises(JournalConflict):
        store.mark_signed(entry.id, signed(nonce + 1))
    with pytest.raises(JournalConflict):
        store.claim_nonce(entry.id)  # one nonce per entry


def test_a_vault_has_one_rebalance_in_flight(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    first_id, _ = sent_entry(store, VAULT_A)
    with pytest.raises(JournalConflict):
        store.create_intent(intent(VAULT_B, VAULT_A))
    assert not store.vault_in_flight(VAULT_B)  # the refused intent claimed nothing
    assert store.vaults_in_flight() == {VAULT_A}
    store.mark_mined(first_id, 20, block(20).hash, 1)
    store.create_intent(intent(VAULT_B, VAULT_A))
    assert store.vaults_in_flight() == {VAULT_A, VAULT_B}


def test_replacement_then_replacement_mined(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    old_id, nonce = sent_entry(store, VAULT_A)
    new = store.add_successor(
        old_id, TxKind.REBALANCE, "0x" + "12" * 20, 0, b"\x01\x02", signed(nonce, 1)
    )
    assert new.state is S.SIGNED and new.root_id == old_id and new.replaces_id == old_id
    assert store.entry(old_id).state is S.SENT  # not replaced before the node accepted it
    store.mark_sent(new.id, 14)
    old = store.entry(old_id)
    assert old.state is S.REPLACED and old.replaced_by_id == new.id
    store.mark_mined(new.id, 15, block(15).hash, 1)
    states = [e.state for e in store.entries_for_nonce(SENDER, nonce)]
    assert states == [S.REPLACED, S.MINED]
    assert not store.vault_in_flight(VAULT_A)


def test_one_unsent_replacement_at_a_time(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    old_id, nonce = sent_entry(store)
    first = store.add_successor(old_id, TxKind.REBALANCE, SENDER, 0, b"", signed(nonce, 1))
    with pytest.raises(JournalConflict):
        store.add_successor(old_id, TxKind.CANCEL, SENDER, 0, b"", signed(nonce, 2))
    store.mark_failed(first.id, "replacement transaction underpriced")
    second = store.add_successor(old_id, TxKind.REBALANCE, SENDER, 0, b"", signed(nonce, 3))
    assert second.state is S.SIGNED


def test_concurrent_replacements_of_one_entry_succeed_once(backend: Backend) -> None:
    setup = backend.store()
    setup.resync_nonces(SENDER, 0)
    old_id, nonce = sent_entry(setup)
    workers = [backend.store() for _ in range(4)]
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(workers))

    def work(index: int, store: Store) -> None:
        start.wait()
        try:
            store.add_successor(old_id, TxKind.REBALANCE, SENDER, 0, b"", signed(nonce, 10 + index))
            result = "added"
        except JournalConflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["added"] + ["conflict"] * 3
    assert len(setup.entries_for_nonce(SENDER, nonce)) == 2


def test_when_the_replaced_one_wins_the_replacement_is_dropped(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    old_id, nonce = sent_entry(store, VAULT_A)
    new = store.add_successor(old_id, TxKind.REBALANCE, "0x" + "12" * 20, 0, b"", signed(nonce, 1))
    store.mark_sent(new.id, 14)
    store.mark_mined(old_id, 15, block(15).hash, 1)
    group = {e.id: e for e in store.entries_for_nonce(SENDER, nonce)}
    assert group[old_id].state is S.MINED and group[new.id].state is S.DROPPED
    with pytest.raises(JournalConflict):  # a second mined entry for one nonce is impossible
        store.mark_mined(new.id, 15, block(15).hash, 1)


def test_cancel_moves_the_original_to_cancelled(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    old_id, nonce = sent_entry(store, VAULT_A)
    cancel = store.add_successor(old_id, TxKind.CANCEL, SENDER, 0, b"", signed(nonce, 2))
    store.mark_sent(cancel.id, 14)
    assert store.entry(old_id).state is S.CANCELLED
    assert store.vault_in_flight(VAULT_A)  # the original could still win the race
    store.mark_mined(cancel.id, 15, block(15).hash, 1)
    assert not store.vault_in_flight(VAULT_A)


def test_reorg_moves_mined_back_to_sent_and_reclaims_the_vault(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    entry_id, _ = sent_entry(store, VAULT_A)
    store.mark_mined(entry_id, 15, block(15).hash, 1)
    assert [e.id for e in store.mined_since(15)] == [entry_id] and store.mined_since(16) == []
    back = store.mark_reorged(entry_id, at_block=16)
    assert back.state is S.SENT and back.mined_block_hash is None and back.sent_at_block == 16
    assert store.vault_in_flight(VAULT_A)
    store.mark_mined(entry_id, 16, block(16, fork="b").hash, 1)
    assert store.entry(entry_id).mined_block_hash == block(16, fork="b").hash


def test_two_instances_cannot_both_move_an_entry(backend: Backend) -> None:
    one, two = backend.store(), backend.store()
    one.resync_nonces(SENDER, 0)
    entry = one.create_intent(intent(VAULT_A))
    nonce = two.claim_nonce(entry.id)
    one.mark_signed(entry.id, signed(nonce))
    two.mark_sent(entry.id, 3)
    with pytest.raises(JournalConflict):
        one.mark_sent(entry.id, 3)
    with pytest.raises(JournalConflict):
        two.create_intent(intent(VAULT_A))


# --- nonces -----------------------------------------------------------------------------


def test_claiming_needs_a_first_sync(store: Store) -> None:
    entry = store.create_intent(intent())
    assert store.next_nonce(SENDER) is None
    with pytest.raises(JournalConflict):
        store.claim_nonce(entry.id)


def test_failed_nonces_are_reused_never_skipped(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    entries = [store.create_intent(intent()) for _ in range(4)]
    claimed = [store.claim_nonce(e.id) for e in entries]
    assert claimed == [0, 1, 2, 3]
    store.mark_failed(entries[1].id, "could not sign")  # a hole: handed out again first
    assert store.free_nonces(SENDER) == [1]
    assert store.claim_nonce(store.create_intent(intent()).id) == 1
    store.mark_failed(entries[3].id, "refused")  # the top one: the counter goes back
    store.mark_failed(entries[2].id, "refused")
    assert store.next_nonce(SENDER) == 2 and store.free_nonces(SENDER) == []
    assert store.claim_nonce(store.create_intent(intent()).id) == 2


def test_a_failed_replacement_keeps_the_groups_nonce(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    old_id, nonce = sent_entry(store)
    new = store.add_successor(old_id, TxKind.REBALANCE, "0x" + "12" * 20, 0, b"", signed(nonce, 1))
    store.mark_failed(new.id, "replacement transaction underpriced")
    assert store.entry(old_id).state is S.SENT
    assert store.next_nonce(SENDER) == nonce + 1 and store.free_nonces(SENDER) == []


def test_resync_keeps_journaled_nonces_and_frees_the_gaps(store: Store) -> None:
    store.resync_nonces(SENDER, 0)
    ids = [sent_entry(store)[0] for _ in range(3)]  # nonces 0, 1, 2
    store.mark_mined(ids[0], 5, block(5).hash, 1)
    store.mark_dropped(ids[1], "nonce used by another transaction")
    # the chain saw nonce 0 only; 1 was used elsewhere but is unknown to this node
    assert store.resync_nonces(SENDER, 1) == 3
    assert store.free_nonces(SENDER) == [1]
    # someone used the key far ahead: everything below the chain's count is gone
    assert store.resync_nonces(SENDER, 9) == 9
    assert store.free_nonces(SENDER) == []


def test_concurrent_claims_hand_out_each_nonce_once(backend: Backend) -> None:
    setup = backend.store()
    setup.resync_nonces(SENDER, 100)
    workers = [backend.store() for _ in range(4)]
    got: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(store: Store) -> None:
        try:
            for _ in range(8):
                nonce = store.claim_nonce(store.create_intent(intent()).id)
                with lock:
                    got.append(nonce)
        except Exception as exc:  # noqa: BLE001 - collected, asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(got) == list(range(100, 132))


def test_concurrent_moves_of_one_entry_succeed_once(backend: Backend) -> None:
    setup = backend.store()
    setup.resync_nonces(SENDER, 0)
    entry = setup.create_intent(intent())
    setup.mark_signed(entry.id, signed(setup.claim_nonce(entry.id)))
    workers = [backend.store() for _ in range(4)]
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(workers))

    def work(store: Store) -> None:
        start.wait()
        try:
            store.mark_sent(entry.id, 5)
            result = "moved"
        except JournalConflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=work, args=(s,)) for s in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 3 + ["moved"]


def test_concurrent_intents_for_one_vault_claim_it_once(backend: Backend) -> None:
    workers = [backend.store() for _ in range(4)]
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(workers))

    def work(store: Store) -> None:
        start.wait()
        try:
            store.create_intent(intent(VAULT_A))
            result = "claimed"
        except JournalConflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=work, args=(s,)) for s in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["claimed"] + ["conflict"] * 3
    assert len(workers[0].in_flight(SENDER)) == 1


def test_sqlite_has_no_schemas(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Store(f"sqlite:///{tmp_path / 'x.sqlite'}", schema="nope")


# --- what the database belongs to ------------------------------------------------------------


def test_a_database_serves_one_chain(backend: Backend) -> None:
    first = backend.store()
    first.bind_chain(1)
    first.bind_chain(1)  # the same chain again: fine
    later = backend.store()
    later.bind_chain(1)
    with pytest.raises(ConfigError, match="journals chain 1, the node is on chain 10"):
        later.bind_chain(10)
