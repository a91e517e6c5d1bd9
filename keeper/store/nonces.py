"""Persisted nonces per sender: the next fresh nonce and the given-back ones below it.

Every write first touches the sender's row (``UPDATE ... SET updated_at``): on PostgreSQL
that takes the row lock, on SQLite the database write lock, so two keeper instances
claiming at once are serialised and never get the same nonce.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, bindparam, delete, func, select, update

from keeper.errors import JournalConflict
from keeper.store import journal
from keeper.store.records import JournalState
from keeper.store.sql import insert_ignore
from keeper.store.tables import free_nonces, nonces
from keeper.store.tables import journal as journal_table

S = JournalState
# Entries whose nonce stays taken by the keeper while it resyncs: they are (or may become)
# a transaction at that nonce that the confirmer still tracks.
_HOLDING_STATES = (S.INTENT, S.SIGNED, S.SENT, S.MINED)


# a claim's statements, built once (bound at execution)
_TOUCH = update(nonces).where(nonces.c.sender == bindparam("b_sender"))  # SET: the parameters
_NEXT = select(nonces.c.next_nonce).where(nonces.c.sender == bindparam("b_sender"))
_LOWEST_FREE = select(func.min(free_nonces.c.nonce)).where(
    free_nonces.c.sender == bindparam("b_sender")
)
_TAKE_FREE = delete(free_nonces).where(
    and_(free_nonces.c.sender == bindparam("b_sender"), free_nonces.c.nonce == bindparam("b_nonce"))
)


def _lock(conn: Connection, sender: str, now: float, start: int = 0) -> int:
    """Lock the sender's row (creating it at ``start``) and return its next nonce."""
    insert_ignore(conn, nonces, {"sender": sender, "next_nonce": start, "updated_at": now})
    conn.execute(_TOUCH, {"b_sender": sender, "updated_at": now})
    return int(conn.execute(_NEXT, {"b_sender": sender}).scalar_one())


def _set_next(conn: Connection, sender: str, value: int) -> None:
    conn.execute(_TOUCH, {"b_sender": sender, "next_nonce": value})


def peek(conn: Connection, sender: str) -> int | None:
    """The next fresh nonce, or None before the first resync (not a failure)."""
    value = conn.execute(_NEXT, {"b_sender": sender}).scalar()
    return None if value is None else int(value)


def free_list(conn: Connection, sender: str) -> list[int]:
    query = select(free_nonces.c.nonce).where(free_nonces.c.sender == sender)
    return sorted(int(n) for n in conn.execute(query).scalars())


def claim(conn: Connection, entry_id: int, now: float, sender: str | None = None) -> int:
    """Hand the lowest free nonce (a given-back one first) to an ``intent`` entry without
    one (``sender``: its sender, when the caller just journaled it)."""
    if sender is None:
        entry = journal.get(conn, entry_id)
        if entry.state is not S.INTENT or entry.nonce is not None:
            raise JournalConflict(f"journal entry {entry_id} ({entry.state}) cannot claim a nonce")
        sender = entry.sender
    # the lock; no row: never synced
    if conn.execute(_TOUCH, {"b_sender": sender, "updated_at": now}).rowcount != 1:
        raise JournalConflict(f"nonces of {sender} were never synced with the chain")
    lowest = conn.execute(_LOWEST_FREE, {"b_sender": sender}).scalar()
    if lowest is not None:
        nonce = int(lowest)
        conn.execute(_TAKE_FREE, {"b_sender": sender, "b_nonce": nonce})
    else:
        nonce = int(conn.execute(_NEXT, {"b_sender": sender}).scalar_one())
        _set_next(conn, sender, nonce + 1)
    journal.set_nonce(conn, entry_id, nonce, now)  # conditional: an intent without a nonce
    return nonce


def give_back(conn: Connection, sender: str, nonce: int, now: float) -> None:
    """Return a nonce that never reached the chain, so the next claim reuses it."""
    next_nonce = _lock(conn, sender, now)
    if nonce >= next_nonce:
        return
    if nonce != next_nonce - 1:
        insert_ignore(conn, free_nonces, {"sender": sender, "nonce": nonce})
        return
    # the top nonce: lower the counter, and fold given-back nonces just below it into it
    free = set(free_list(conn, sender))
    while nonce - 1 in free:
        nonce -= 1
    conn.execute(
        delete(free_nonces).where(
            and_(free_nonces.c.sender == sender, free_nonces.c.nonce >= nonce)
        )
    )
    _set_next(conn, sender, nonce)


def resync(conn: Connection, sender: str, chain_next: int, now: float) -> int:
    """Align with the chain's ``pending`` transaction count; returns the new next nonce.

    Nonces at or above ``chain_next`` that the journal still holds stay taken; every other
    nonce between ``chain_next`` and the new next nonce becomes free, so no gap is left.
    """
    _lock(conn, sender, now, start=chain_next)
    held = {
        int(n)
        for n in conn.execute(
            select(journal_table.c.nonce).where(
                and_(
                    journal_table.c.sender == sender,
                    journal_table.c.nonce >= chain_next,
                    journal_table.c.state.in_([s.value for s in _HOLDING_STATES]),
                )
            )
        ).scalars()
    }
    new_next = max([chain_next, *(n + 1 for n in held)])
    conn.execute(delete(free_nonces).where(free_nonces.c.sender == sender))
    gaps = [{"sender": sender, "nonce": n} for n in range(chain_next, new_next) if n not in held]
    if gaps:
        conn.execute(free_nonces.insert(), gaps)
    _set_next(conn, sender, new_next)
    return new_next
