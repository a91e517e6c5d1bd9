"""Typed rows of the store: journal entries and their state machine, governance markers."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from keeper.errors import JournalConflict


class TxKind(enum.StrEnum):
    REBALANCE = "rebalance"
    CANCEL = "cancel"


class JournalState(enum.StrEnum):
    """``intent -> signed -> sent -> mined | replaced | cancelled | failed | dropped``.

    * ``signed``: raw bytes journaled, not (known to be) broadcast yet.
    * ``sent``: the node accepted the bytes (or already had them).
    * ``mined``: a receipt exists in the block recorded; ``receipt_status`` says whether
      it succeeded. A reorg that removes that block moves it back to ``sent``.
    * ``replaced`` / ``cancelled``: a same-nonce replacement / 0-value cancel was accepted
      by the node (of a ``sent`` entry, or of a ``signed`` one whose bytes may have reached
      a node before a crash). Until one of the group is mined such an entry may still win the race,
      so it can still become ``mined``.
    * ``dropped``: the nonce was used on chain by another transaction.
    * ``failed``: never reached the chain (could not be built or signed, or the node
      refused it for good).
    """

    INTENT = "intent"
    SIGNED = "signed"
    SENT = "sent"
    MINED = "mined"
    REPLACED = "replaced"
    CANCELLED = "cancelled"
    FAILED = "failed"
    DROPPED = "dropped"


S = JournalState
TRANSITIONS: Mapping[JournalState, frozenset[JournalState]] = {
    S.INTENT: frozenset({S.SIGNED, S.FAILED}),
    S.SIGNED: frozenset({S.SENT, S.MINED, S.REPLACED, S.CANCELLED, S.FAILED, S.DROPPED}),
    S.SENT: frozenset({S.MINED, S.REPLACED, S.CANCELLED, S.FAILED, S.DROPPED}),
    S.REPLACED: frozenset({S.MINED}),
    S.CANCELLED: frozenset({S.MINED}),
    S.DROPPED: frozenset({S.MINED}),
    S.MINED: frozenset({S.SENT}),  # only through a reorg
    S.FAILED: frozenset(),
}
OPEN_STATES = frozenset({S.SIGNED, S.SENT})
IN_FLIGHT_STATES = frozenset({S.INTENT, S.SIGNED, S.SENT})
# States whose transaction may be (or have been) on chain: the nonce is not free.
ON_CHAIN_STATES = frozenset({S.SIGNED, S.SENT, S.MINED, S.REPLACED, S.CANCELLED, S.DROPPED})


def check_transition(entry_id: int, old: JournalState, new: JournalState) -> None:
    """Raise ``JournalConflict`` unless ``old -> new`` is a legal move."""
    if new not in TRANSITIONS[old]:
        raise JournalConflict(f"journal entry {entry_id}: illegal move {old} -> {new}")


@dataclass(frozen=True)
class TxIntent:
    """A transaction the keeper wants sent: what to call, for which vaults, and why."""

    kind: TxKind
    sender: str
    to: str
    data: bytes = b""
    value_wei: int = 0
    gas_limit: int | None = None  # None: estimate
    urgent: bool = False
    vaults: tuple[str, ...] = ()
    payload: Mapping[str, Any] = field(default_factory=dict)  # JSON-serialisable


@dataclass(frozen=True)
class SignedTx:
    """What signing produced, journaled before the broadcast."""

    nonce: int
    chain_id: int
    gas_limit: int
    max_fee_wei: int
    priority_fee_wei: int
    tx_hash: str
    raw_tx: bytes


@dataclass(frozen=True)
class JournalEntry:
    id: int
    root_id: int
    kind: TxKind
    state: JournalState
    payload: Mapping[str, Any]
    urgent: bool
    sender: str
    to: str
    value_wei: int
    data: bytes
    gas_limit: int | None
    nonce: int | None
    chain_id: int | None
    max_fee_wei: int | None
    priority_fee_wei: int | None
    tx_hash: str | None
    raw_tx: bytes | None
    sent_at_block: int | None
    mined_block_number: int | None
    mined_block_hash: str | None
    receipt_status: int | None
    replaces_id: int | None
    replaced_by_id: int | None
    error: str | None
    created_at: float
    updated_at: float

    @property
    def vaults(self) -> tuple[str, ...]:
        return tuple(str(v) for v in self.payload.get("vaults", ()))

    def signed(self) -> SignedTx:
        """The journaled signature; ``JournalConflict`` if the entry was never signed."""
        if (
            self.nonce is None
            or self.chain_id is None
            or self.gas_limit is None
            or self.max_fee_wei is None
            or self.priority_fee_wei is None
            or self.tx_hash is None
            or self.raw_tx is None
        ):
            raise JournalConflict(f"journal entry {self.id} ({self.state}) has no signed bytes")
        return SignedTx(
            self.nonce,
            self.chain_id,
            self.gas_limit,
            self.max_fee_wei,
            self.priority_fee_wei,
            self.tx_hash,
            self.raw_tx,
        )


class Markers(NamedTuple):
    """The last governance markers of a vault the keeper acted on."""

    request_nonce: int
    params_version: int
