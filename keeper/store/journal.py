"""The transaction journal: one row per transaction intent, moved through ``JournalState``.

Every move is a conditional ``UPDATE ... WHERE id = :id AND state = :seen``: when another
keeper instance moved the entry first, the update touches no row and the move fails with
``JournalConflict`` instead of acting twice. Entries with the same ``(sender, nonce)`` form a
group (the original, its replacements, a cancel); ``root_id`` names the group's first entry.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, bindparam, delete, select, update

from keeper.errors import JournalConflict
from keeper.store.records import (
    IN_FLIGHT_STATES,
    OPEN_STATES,
    JournalEntry,
    JournalState,
    SignedTx,
    TxIntent,
    TxKind,
    check_transition,
)
from keeper.store.tables import journal, vault_claims

S = JournalState


@lru_cache(maxsize=256)
def _payload(text: str) -> Mapping[str, Any]:
    """An entry's JSON payload, parsed once per distinct text: every write reads its entry
    back and a book's payload (each vault's decision and leg) is tens of kilobytes. Shared
    between the entries it came with, so read-only at the top level."""
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise JournalConflict(f"journal payload is not a JSON object: {text[:80]!r}")
    return MappingProxyType(parsed)


def _entry(row: RowMapping) -> JournalEntry:
    def opt_int(name: str) -> int | None:
        value = row[name]
        return None if value is None else int(value)

    return JournalEntry(
        id=int(row["id"]),
        root_id=int(row["root_id"]),
        kind=TxKind(row["kind"]),
        state=JournalState(row["state"]),
        payload=_payload(row["payload"]),
        urgent=bool(row["urgent"]),
        sender=str(row["sender"]),
        to=str(row["to_address"]),
        value_wei=int(row["value_wei"]),
        data=bytes(row["data"]),
        gas_limit=opt_int("gas_limit"),
        nonce=opt_int("nonce"),
        chain_id=opt_int("chain_id"),
        max_fee_wei=opt_int("max_fee_wei"),
        priority_fee_wei=opt_int("priority_fee_wei"),
        tx_hash=row["tx_hash"],
        raw_tx=None if row["raw_tx"] is None else bytes(row["raw_tx"]),
        sent_at_block=opt_int("sent_at_block"),
        mined_block_number=opt_int("mined_block_number"),
        mined_block_hash=row["mined_block_hash"],
        receipt_status=opt_int("receipt_status"),
        replaces_id=opt_int("replaces_id"),
        replaced_by_id=opt_int("replaced_by_id"),
        error=row["error"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


def _signed_values(signed: SignedTx) -> dict[str, Any]:
    return {
        "nonce": signed.nonce,
        "chain_id": signed.chain_id,
        "gas_limit": signed.gas_limit,
        "max_fee_wei": signed.max_fee_wei,
        "priority_fee_wei": signed.priority_fee_wei,
        "tx_hash": signed.tx_hash,
        "raw_tx": signed.raw_tx,
    }


# --- reads ------------------------------------------------------------------------------

# The statements of every tick, built once (bound at execution): building one and its cache
# key costs more than SQLite takes to run it.
_BY_ID = select(journal).where(journal.c.id == bindparam("b_id"))
_FOR_NONCE = (
    select(journal)
    .where(and_(journal.c.sender == bindparam("b_sender"), journal.c.nonce == bindparam("b_nonce")))
    .order_by(journal.c.id)
)
_MINED_SINCE = (
    select(journal)
    .where(
        and_(
            journal.c.state == S.MINED.value,
            journal.c.mined_block_number >= bindparam("b_number"),
        )
    )
    .order_by(journal.c.id)
)
_HASH_TAKEN = select(journal.c.id).where(journal.c.tx_hash == bindparam("b_hash"))
_ALL_CLAIMS = select(vault_claims.c.vault, vault_claims.c.root_id)
_CLAIMS_OF = _ALL_CLAIMS.where(vault_claims.c.vault.in_(bindparam("b_vaults", expanding=True)))
_MOVED = update(journal).where(
    and_(journal.c.id == bindparam("b_id"), journal.c.state == bindparam("b_seen"))
)
_FIELDS = {"to_address": "to"}  # the entry's name for a column, where it differs


def get(conn: Connection, entry_id: int) -> JournalEntry:
    row = conn.execute(_BY_ID, {"b_id": entry_id}).mappings().first()
    if row is None:
        raise JournalConflict(f"no journal entry {entry_id}")
    return _entry(row)


_STATE_IN = select(journal).where(journal.c.state.in_(bindparam("b_states", expanding=True)))
_IN_STATES = _STATE_IN.order_by(journal.c.id)
_IN_STATES_OF = _STATE_IN.where(journal.c.sender == bindparam("b_sender")).order_by(journal.c.id)


def in_states(
    conn: Connection, states: Iterable[JournalState], sender: str | None = None
) -> list[JournalEntry]:
    binds: dict[str, Any] = {"b_states": [s.value for s in states]}
    if sender is None:
        rows = conn.execute(_IN_STATES, binds)
    else:
        rows = conn.execute(_IN_STATES_OF, binds | {"b_sender": sender})
    return [_entry(r) for r in rows.mappings()]


def for_nonce(conn: Connection, sender: str, nonce: int) -> list[JournalEntry]:
    rows = conn.execute(_FOR_NONCE, {"b_sender": sender, "b_nonce": nonce}).mappings()
    return [_entry(r) for r in rows]


def mined_since(conn: Connection, number: int) -> list[JournalEntry]:
    return [_entry(r) for r in conn.execute(_MINED_SINCE, {"b_number": number}).mappings()]


def claimed_vaults(conn: Connection, vaults: Iterable[str] | None = None) -> dict[str, int]:
    """``{vault: root_id}`` of the vaults a rebalance is in flight for."""
    if vaults is None:
        rows = conn.execute(_ALL_CLAIMS)
    else:
        rows = conn.execute(_CLAIMS_OF, {"b_vaults": list(vaults)})
    return {str(v): int(r) for v, r in rows}


# --- writes -----------------------------------------------------------------------------


_INSERT = journal.insert()
_SET_ROOT = update(journal).where(journal.c.id == bindparam("b_id"))


def _insert(conn: Connection, **values: Any) -> int:
    key = conn.execute(_INSERT, values).inserted_primary_key
    if key is None:
        raise JournalConflict("the database returned no id for a new journal entry")
    return int(key[0])


def create_intent(conn: Connection, intent: TxIntent, now: float) -> int:
    """Insert an ``intent`` entry and claim its vaults; ``JournalConflict`` if one is claimed."""
    taken = claimed_vaults(conn, intent.vaults)
    if taken:
        raise JournalConflict(f"a rebalance is already in flight for {sorted(taken)}")
    payload = {**intent.payload, "vaults": list(intent.vaults)}
    entry_id = _insert(
        conn,
        kind=intent.kind.value,
        state=S.INTENT.value,
        payload=json.dumps(payload, sort_keys=True, default=str),
        urgent=intent.urgent,
        sender=intent.sender,
        to_address=intent.to,
        value_wei=intent.value_wei,
        data=intent.data,
        gas_limit=intent.gas_limit,
        created_at=now,
        updated_at=now,
    )
    conn.execute(_SET_ROOT, {"b_id": entry_id, "root_id": entry_id})
    if intent.vaults:  # the primary key refuses a second claim made concurrently
        claims = [{"vault": v, "root_id": entry_id} for v in intent.vaults]
        conn.execute(vault_claims.insert(), claims)
    return entry_id


def move(
    conn: Connection, entry_id: int, new: JournalState, now: float, **values: Any
) -> JournalEntry:
    """Move an entry to ``new`` if that is legal from its current state, atomically; the
    entry as moved (what the row now holds: the update is conditional on the state read)."""
    current = get(conn, entry_id)
    check_transition(entry_id, current.state, new)
    result = conn.execute(
        _MOVED,  # the columns set are the parameters that are not b_ binds
        {"b_id": entry_id, "b_seen": current.state.value, "state": new.value, "updated_at": now}
        | values,
    )
    if result.rowcount != 1:
        raise JournalConflict(f"journal entry {entry_id} was moved by someone else")
    changed = {_FIELDS.get(name, name): value for name, value in values.items()}
    return dataclasses.replace(current, state=new, updated_at=now, **changed)


_SET_NONCE = update(journal).where(
    and_(
        journal.c.id == bindparam("b_id"),
        journal.c.state == S.INTENT.value,
        journal.c.nonce.is_(None),
    )
)


def set_nonce(conn: Connection, entry_id: int, nonce: int, now: float) -> None:
    """Bind a claimed nonce to an ``intent`` entry that has none yet."""
    result = conn.execute(_SET_NONCE, {"b_id": entry_id, "nonce": nonce, "updated_at": now})
    if result.rowcount != 1:
        raise JournalConflict(f"journal entry {entry_id} is not an intent without a nonce")


def mark_signed(conn: Connection, entry_id: int, signed: SignedTx, now: float) -> JournalEntry:
    entry = get(conn, entry_id)
    if entry.nonce != signed.nonce:
        raise JournalConflict(
            f"journal entry {entry_id} holds nonce {entry.nonce}, signed with {signed.nonce}"
        )
    if _hash_taken(conn, signed.tx_hash):
        raise JournalConflict(f"journal entry {entry_id}: transaction {signed.tx_hash} exists")
    return move(conn, entry_id, S.SIGNED, now, **_signed_values(signed))


def insert_successor(
    conn: Connection,
    old_id: int,
    kind: TxKind,
    to: str,
    value_wei: int,
    data: bytes,
    signed: SignedTx,
    now: float,
) -> int:
    """Insert a signed same-nonce replacement (or cancel) of a ``sent`` entry (or of a
    ``signed`` one, whose bytes may be on a node after a crash). Bytes the journal holds
    already are refused with ``JournalConflict``, never the table's UNIQUE ``tx_hash``."""
    old = get(conn, old_id)
    if old.state not in OPEN_STATES or old.nonce != signed.nonce:
        raise JournalConflict(
            f"journal entry {old_id} ({old.state}, nonce {old.nonce}) cannot be replaced "
            f"by a transaction with nonce {signed.nonce}"
        )
    # Lock the old row (PostgreSQL waits here for another instance replacing it), then
    # allow one unsent replacement per group at a time.
    touched = conn.execute(
        update(journal)
        .where(and_(journal.c.id == old_id, journal.c.state == old.state.value))
        .values(updated_at=now)
    )
    group = for_nonce(conn, old.sender, signed.nonce)
    pending = [e.id for e in group if e.state is S.SIGNED and e.id != old_id]
    if touched.rowcount != 1 or pending:
        raise JournalConflict(
            f"journal entry {old_id} is being replaced already (unsent entries {pending})"
        )
    if any(e.tx_hash == signed.tx_hash for e in group) or _hash_taken(conn, signed.tx_hash):
        raise JournalConflict(f"journal entry {old_id}: transaction {signed.tx_hash} exists")
    return _insert(
        conn,
        root_id=old.root_id,
        kind=kind.value,
        state=S.SIGNED.value,
        payload=json.dumps(dict(old.payload), sort_keys=True, default=str),
        urgent=old.urgent,
        sender=old.sender,
        to_address=to,
        value_wei=value_wei,
        data=data,
        replaces_id=old_id,
        created_at=now,
        updated_at=now,
        **_signed_values(signed),
    )


def _hash_taken(conn: Connection, tx_hash: str) -> bool:
    return conn.execute(_HASH_TAKEN, {"b_hash": tx_hash}).first() is not None


def mark_sent(conn: Connection, entry_id: int, at_block: int, now: float) -> JournalEntry:
    """``signed -> sent``; a replacement also moves the entry it replaces (if still open)."""
    entry = move(conn, entry_id, S.SENT, now, sent_at_block=at_block)
    if entry.replaces_id is not None:
        old = get(conn, entry.replaces_id)
        if old.state in OPEN_STATES:
            superseded = S.CANCELLED if entry.kind is TxKind.CANCEL else S.REPLACED
            move(conn, old.id, superseded, now, replaced_by_id=entry_id)
    return entry


def mark_mined(
    conn: Connection, entry_id: int, block_number: int, block_hash: str, status: int, now: float
) -> JournalEntry:
    """Record the receipt; the group's other open entries become ``dropped``."""
    entry = move(
        conn,
        entry_id,
        S.MINED,
        now,
        mined_block_number=block_number,
        mined_block_hash=block_hash,
        receipt_status=status,
        error=None,
    )
    for sibling in for_nonce(conn, entry.sender, entry.signed().nonce):
        if sibling.id == entry_id:
            continue
        if sibling.state is S.MINED:
            raise JournalConflict(
                f"nonce {entry.nonce} of {entry.sender}: entries {sibling.id} and {entry_id} "
                "both recorded as mined"
            )
        if sibling.state in OPEN_STATES:
            move(conn, sibling.id, S.DROPPED, now, error=f"nonce used by entry {entry_id}")
    release_claims(conn, entry.root_id)
    return entry


def mark_dropped(conn: Connection, entry_id: int, reason: str, now: float) -> JournalEntry:
    entry = move(conn, entry_id, S.DROPPED, now, error=reason)
    release_claims_if_settled(conn, entry.root_id)
    return entry


def mark_failed(conn: Connection, entry_id: int, reason: str, now: float) -> JournalEntry:
    entry = move(conn, entry_id, S.FAILED, now, error=reason)
    release_claims_if_settled(conn, entry.root_id)
    return entry


def mark_reorged(conn: Connection, entry_id: int, at_block: int, now: float) -> JournalEntry:
    """``mined -> sent`` after its block left the canonical chain; its vaults are claimed again."""
    entry = move(
        conn,
        entry_id,
        S.SENT,
        now,
        mined_block_number=None,
        mined_block_hash=None,
        receipt_status=None,
        sent_at_block=at_block,
        error="block reorged out",
    )
    free = [v for v in entry.vaults if v not in claimed_vaults(conn, entry.vaults)]
    if free:
        conn.execute(vault_claims.insert(), [{"vault": v, "root_id": entry.root_id} for v in free])
    return entry


def release_claims(conn: Connection, root_id: int) -> None:
    conn.execute(delete(vault_claims).where(vault_claims.c.root_id == root_id))


def release_claims_if_settled(conn: Connection, root_id: int) -> None:
    """Release the group's vaults once none of its entries is in flight any more."""
    in_flight = conn.execute(
        select(journal.c.id).where(
            and_(
                journal.c.root_id == root_id,
                journal.c.state.in_([s.value for s in IN_FLIGHT_STATES]),
            )
        )
    ).first()
    if in_flight is None:
        release_claims(conn, root_id)
