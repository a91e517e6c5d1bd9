"""The transaction lifecycle: journal, nonces, sign, broadcast, confirm, replace, cancel and
reconcile behind one small interface (docs/interfaces.md, "The transaction lifecycle").

The actor calls :meth:`Lifecycle.start` once (before anything else), :meth:`Lifecycle.submit`
for new work and :meth:`Lifecycle.on_block` once per block AFTER that block's decisions, with
a ``Redecide`` callback that answers ``STILL_WANTED | STALE | UNKNOWN`` for journaled work
from the current state. Nothing is shared between the actor and the confirmer but the store.

Journal states (``keeper.store.records``) and what moves an entry:

====================  ============================================  =====================
from                  event                                         to
====================  ============================================  =====================
(new)                 ``submit``: fees fit the cap, vaults free,     signed (in one store
                      gas, funds and nonces checked: intent,         transaction, the one
                      nonce claimed, signed, bytes journaled         commit before sending)
(new)                 ``prepare`` (``submit``'s first half: the      signed (not sent)
                      actor signs while the node simulates)
signed (prepared)     ``send_prepared``                              sent
signed (prepared)     ``withdraw`` (its simulation failed)           failed (nonce given
                                                                     back, vaults freed)
(new)                 ``submit``: fees above the cap, vault          nothing journaled
                      backing off or in flight, a check or the       (``Refused``)
                      signing fails
intent                (only in a journal an earlier version wrote,   failed (nonce given
                      or ``Store.create_intent``) a restart (at      back)
                      once) or ``stale_intent_seconds``
signed                node accepts the bytes                         sent
signed                node refuses for good                          failed
signed                on a later block: Redecide STILL_WANTED        sent (same bytes)
signed                Redecide STALE                                 cancelled (+ cancel
                                                                     entry signed -> sent)
sent                  receipt                                        mined
sent                  stuck and Redecide STILL_WANTED                replaced (+ entry
                                                                     signed -> sent)
sent                  stuck / restart / reorg and Redecide STALE     cancelled (+ cancel)
sent                  restart/reorg, node forgot it, STILL_WANTED    sent (same bytes)
sent                  any re-decision UNKNOWN                        sent (wait)
sent                  nonce used by a transaction not journaled      dropped
replaced, cancelled,  its receipt after all                          mined
dropped
mined                 its block left the canonical chain             sent (re-checked)
====================  ============================================  =====================

A mined entry whose receipt says the whole transaction reverted is logged at ERROR with the
reason (its call replayed in its block), counted (:attr:`Lifecycle.reverts_total`), and its
vaults back off for ``revert_backoff_blocks``, doubling per consecutive revert.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from keeper import metrics
from keeper.core.chaintrack import ChainUpdate
from keeper.core.fees import FeeQuote, SendNow, quote_new
from keeper.core.types import BlockRef
from keeper.errors import (
    ConfigError,
    FatalError,
    FeeCapExceeded,
    InsufficientFunds,
    JournalConflict,
    KeeperError,
    RetryableError,
)
from keeper.store import JournalEntry, Store, TxIntent, TxKind
from keeper.tx.confirm import Confirmer, LifecycleReport, Receipt
from keeper.tx.sender import Sender, Unsent
from keeper.tx.stuck import Redecide, Urgent

log = logging.getLogger("keeper.tx")


class Refusal(enum.StrEnum):
    FEES = "fees"  # above the cap for its urgency: nothing journaled, re-decided next block
    IN_FLIGHT = "in_flight"  # a vault has work in flight (maybe another instance's)
    BACKOFF = "backoff"  # a vault's last transaction reverted as a whole
    NODE = "node"  # the node could not be reached or refused for now: next block
    FUNDS = "funds"  # the account cannot pay: fund it
    INVALID = "invalid"  # the call cannot be sent (reverts in estimation, refused for good)
    NOT_STARTED = "not_started"  # start() has not reconciled the journal yet


@dataclass(frozen=True)
class Submitted:
    entry: JournalEntry


@dataclass(frozen=True)
class Refused:
    reason: Refusal
    detail: str
    entry_id: int | None = None  # the journal entry, when one was written


SubmitOutcome = Submitted | Refused


@dataclass(frozen=True)
class Prepared:
    """An intent journaled and signed, not broadcast (:meth:`Lifecycle.prepare`)."""

    intent: TxIntent
    fees: FeeQuote
    entry: JournalEntry


def _refusal(exc: KeeperError) -> Refused:
    """The outcome of a submission that raised ``exc``."""
    if isinstance(exc, FeeCapExceeded):
        return Refused(Refusal.FEES, str(exc))
    if isinstance(exc, JournalConflict):
        return Refused(Refusal.IN_FLIGHT, str(exc))
    if isinstance(exc, InsufficientFunds):
        return Refused(Refusal.FUNDS, str(exc))
    if isinstance(exc, Unsent):  # signed, not broadcast: re-decided next block
        return Refused(Refusal.NODE, str(exc), exc.entry_id)
    if isinstance(exc, RetryableError):
        return Refused(Refusal.NODE, str(exc))
    if isinstance(exc, (ConfigError, FatalError)):
        return Refused(Refusal.INVALID, str(exc))
    return Refused(Refusal.NODE, str(exc))


@dataclass(frozen=True)
class LifecycleConfig:
    revert_backoff_blocks: int = 2
    revert_backoff_max_blocks: int = 256


@dataclass(frozen=True)
class Backoff:
    until_block: int  # no new work for the vault before this block
    streak: int  # consecutive whole-transaction reverts


class Lifecycle:
    def __init__(
        self,
        sender: Sender,
        confirmer: Confirmer,
        store: Store,
        config: LifecycleConfig | None = None,
    ) -> None:
        self._sender = sender
        self._confirmer = confirmer
        self._store = store
        self.config = config or LifecycleConfig()
        self.address = sender.address
        self._started = False
        self._head = 0
        self._backoff: dict[str, Backoff] = {}
        self.reverts_total = 0  # whole-transaction reverts seen (export as a counter)

    # --- the interface ---------------------------------------------------------------------

    async def start(self, redecide: Redecide) -> LifecycleReport:
        """Reconcile the journal with the chain; call before anything else."""
        report = await self._confirmer.reconcile(redecide)
        self._head = await self._sender.head()
        self._after(report)
        self._started = True
        return report

    def read_ahead(self, head: BlockRef) -> None:
        """At a new head, before its multicall: start the chain reads :meth:`on_block` and
        the block's first :meth:`submit` will make (receipts, counts, fee history, balance;
        ``keeper.chain.ahead``), so they run alongside the read instead of after it."""
        if not self._started:
            return
        self._sender.read_ahead(head.number)
        self._sender.nonces.read_ahead(head.number)
        self._confirmer.read_ahead(head)

    def drop_reads_ahead(self) -> None:
        """Cancel the reads started ahead that nobody took (before the sessions close)."""
        for component in (self._sender, self._sender.nonces, self._confirmer):
            component.drop_reads_ahead()

    async def on_block(
        self,
        head: BlockRef,
        redecide: Redecide,
        urgent: Urgent = frozenset(),
        chain: ChainUpdate | None = None,
    ) -> LifecycleReport:
        """Follow the journal at ``head``: receipts, reorgs, then journaled work re-decided
        from this block's decisions (``redecide`` answers from them, and may wait for them:
        the pipeline starts this while the block is still read; ``urgent`` names the vaults
        past their hard limit now, whose stuck work may be replaced up to the emergency
        cap; ``chain``: how ``head`` was linked, whose verified blocks need no re-read)."""
        self._head = head.number
        self._sender.at_block(head.number)
        report = await self._confirmer.on_block(head, redecide, urgent, chain)
        self._after(report)
        return report

    async def submit(self, intent: TxIntent) -> SubmitOutcome:
        """Journal, sign and broadcast ``intent``: ``Submitted`` or a ``Refused`` outcome
        (never an exception for a refusal)."""
        prepared = await self.prepare(intent)
        if isinstance(prepared, Refused):
            return prepared
        return await self.send_prepared(prepared)

    async def prepare(self, intent: TxIntent) -> Prepared | Refused:
        """The first half of :meth:`submit`: journal and sign ``intent`` (the one commit
        before a broadcast) without sending it. The actor signs a settlement this way while
        its simulation is still on the node; then it sends it (:meth:`send_prepared`) or
        withdraws it (:meth:`withdraw`). A crash in between leaves a ``signed`` entry, which
        the next start re-decides before any broadcast, as for every signed entry."""
        refused = self._precheck(intent)
        if refused is not None:
            return self._logged(intent, refused)
        try:
            fees = await self._sender.new_fees(intent)  # before anything is journaled
            return Prepared(intent, fees, await self._sender.prepare(intent, fees))
        except KeeperError as exc:
            return self._logged(intent, _refusal(exc))

    async def send_prepared(self, prepared: Prepared) -> SubmitOutcome:
        """Broadcast what :meth:`prepare` signed."""
        try:
            entry = await self._sender.send_prepared(prepared.intent, prepared.fees, prepared.entry)
        except KeeperError as exc:
            return self._logged(prepared.intent, _refusal(exc))
        metrics.tx_broadcast(entry.kind.value)
        return Submitted(entry)

    def withdraw(self, prepared: Prepared, why: str) -> None:
        """What :meth:`prepare` signed is not sent after all (its simulation failed, or the
        block's plan changed): ``failed``, its nonce given back, its vaults free."""
        entry = self._store.mark_failed(prepared.entry.id, f"withdrawn before broadcast: {why}")
        self._sender.refund(prepared.entry)
        log.info(
            "signed transaction withdrawn before broadcast",
            extra={"fields": {"entry": entry.id, "nonce": entry.nonce, "why": why}},
        )

    async def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt of ``tx_hash`` on the node's canonical chain (None while there is none)."""
        return await self._confirmer.receipt(tx_hash)

    def in_flight_vaults(self) -> frozenset[str]:
        """Vaults with work in flight (any instance on the database) or backing off after a
        whole-transaction revert: the actor must not trade them now."""
        return self._store.vaults_in_flight() | self.backing_off()

    # --- helpers for the actor -------------------------------------------------------------

    def backing_off(self) -> frozenset[str]:
        return frozenset(v for v, b in self._backoff.items() if self._head < b.until_block)

    async def fees_allow(self, urgent: bool) -> bool:
        """Would a new transaction of this urgency fit under its cap now? Asked before any
        quoting or simulating, so work above the (emergency) cap costs nothing per block."""
        history = await self._sender.fee_history()
        return isinstance(quote_new(history, self._sender.config.fees, urgent), SendNow)

    # --- internals ---------------------------------------------------------------------------

    def _precheck(self, intent: TxIntent) -> Refused | None:
        if not self._started:
            return Refused(Refusal.NOT_STARTED, "the journal is not reconciled yet")
        held = set(intent.vaults) & self.backing_off()
        if held:
            return Refused(Refusal.BACKOFF, f"backing off after a revert: {sorted(held)}")
        taken = set(intent.vaults) & self._store.vaults_in_flight()
        if taken:
            return Refused(Refusal.IN_FLIGHT, f"work in flight for {sorted(taken)}")
        return None

    @staticmethod
    def _logged(intent: TxIntent, refused: Refused) -> Refused:
        loud = refused.reason in (Refusal.FUNDS, Refusal.INVALID)
        level = logging.WARNING if loud else logging.INFO
        log.log(
            level,
            "transaction not sent",
            extra={
                "fields": {
                    "kind": intent.kind.value,
                    "vaults": list(intent.vaults),
                    "why": refused.reason.value,
                    "detail": refused.detail,
                }
            },
        )
        return refused

    def _after(self, report: LifecycleReport) -> None:
        """Outcomes counted; reverts back their vaults off; a successful rebalance ends their
        streak."""
        reverted = dict(report.reverted)
        _count_outcomes(self._store, report)
        for entry_id in report.mined:
            entry = self._store.entry(entry_id)
            if entry.kind is not TxKind.REBALANCE:
                continue
            if entry_id in reverted:
                self._revert(entry, reverted[entry_id])
            else:
                for vault in entry.vaults:
                    self._backoff.pop(vault, None)

    def _revert(self, entry: JournalEntry, reason: str) -> None:
        self.reverts_total += 1
        for vault in entry.vaults:
            streak = self._backoff[vault].streak + 1 if vault in self._backoff else 1
            blocks = min(
                self.config.revert_backoff_blocks * 2 ** (streak - 1),
                self.config.revert_backoff_max_blocks,
            )
            self._backoff[vault] = Backoff(self._head + blocks, streak)
        log.error(
            "transaction reverted as a whole: its vaults back off",
            extra={
                "fields": {
                    "entry": entry.id,
                    "tx": entry.tx_hash,
                    "block": entry.mined_block_number,
                    "reason": reason,
                    "vaults": list(entry.vaults),
                    "backoff_until": {v: self._backoff[v].until_block for v in entry.vaults},
                }
            },
        )


def _count_outcomes(store: Store, report: LifecycleReport) -> None:
    """Each journal outcome of one pass as ``keeper_transactions_total{kind,outcome}``."""
    reverted = {entry_id for entry_id, _ in report.reverted}
    for entry_id in report.mined:
        outcome = "reverted" if entry_id in reverted else "mined"
        metrics.tx_outcome(store.entry(entry_id).kind.value, outcome)
    for outcome, ids in (
        ("replaced", report.replaced_by),
        ("cancelled", report.cancelled_by),
        ("dropped", report.dropped),
        ("failed", report.failed),
    ):
        for entry_id in ids:
            metrics.tx_outcome(store.entry(entry_id).kind.value, outcome)
