"""Persistence: processed blocks, decisions, governance markers, the transaction journal, nonces."""

from keeper.store.records import (
    IN_FLIGHT_STATES,
    OPEN_STATES,
    JournalEntry,
    JournalState,
    Markers,
    SignedTx,
    TxIntent,
    TxKind,
)
from keeper.store.store import Store

__all__ = [
    "IN_FLIGHT_STATES",
    "OPEN_STATES",
    "JournalEntry",
    "JournalState",
    "Markers",
    "SignedTx",
    "Store",
    "TxIntent",
    "TxKind",
]
