"""Following journaled transactions until they settle: receipts, stuck transactions
(replaced or cancelled with the same nonce), reorgs, and the reconciliation at start.

Entries with the same nonce form a group; exactly one of a group can be mined. Each block
the confirmer looks, per open group: a receipt for any of its transactions -> that entry
``mined``, the others ``dropped`` (``replaced``/``cancelled`` ones keep their state); no
receipt but the chain's nonce is past it -> someone else used the nonce, the open entries
are ``dropped``; still pending for ``stuck_after_blocks`` -> replaced (fees +12.5%) or, when
``still_needed`` says the work is obsolete, cancelled by a 0-value self-transfer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.exceptions import BlockNotFound, TransactionNotFound

from keeper.chain.retry import READ_POLICY, RetryPolicy
from keeper.chain.sender import CANCEL_GAS, Sender
from keeper.core.types import BlockRef
from keeper.errors import FeeCapExceeded, JournalConflict, KeeperError, RetryableError
from keeper.store import OPEN_STATES, JournalEntry, JournalState, Store, TxIntent, TxKind

log = logging.getLogger("keeper.confirm")
S = JournalState

StillNeeded = Callable[[JournalEntry], Awaitable[bool]]


async def always_needed(entry: JournalEntry) -> bool:
    """The default ``still_needed``: a stuck transaction is replaced, never cancelled."""
    return True


UrgentNow = Callable[[JournalEntry], bool]


def never_urgent(entry: JournalEntry) -> bool:
    """The default ``urgent_now``: a stuck transaction keeps the urgency it was sent with."""
    return False


@dataclass(frozen=True)
class ConfirmConfig:
    stuck_after_blocks: int = 3
    reorg_window_blocks: int = 64  # mined entries this recent are checked against the chain
    stale_intent_seconds: float = 30.0  # intents older than this were abandoned


@dataclass(frozen=True)
class Receipt:
    block_number: int
    block_hash: str
    status: int


@dataclass(frozen=True)
class ConfirmReport:
    """Journal entry ids by what happened to them in one pass."""

    mined: tuple[int, ...] = ()
    dropped: tuple[int, ...] = ()
    replaced_by: tuple[int, ...] = ()  # new replacement entries
    cancelled_by: tuple[int, ...] = ()  # new cancel entries
    reorged: tuple[int, ...] = ()
    rebroadcast: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    waiting_for_fees: tuple[int, ...] = ()
    gap_filled_by: tuple[int, ...] = ()  # new 0-value entries that fill a given-back nonce
    errors: tuple[str, ...] = ()


@dataclass
class _Tally:
    """One pass: its head, what it may do, and what happened (for ``ConfirmReport``)."""

    head: int
    replace_stuck: bool = False
    check_known: bool = False
    lists: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, outcome: str, value: Any) -> None:
        self.lists.setdefault(outcome, []).append(value)

    def report(self) -> ConfirmReport:
        return ConfirmReport(**{k: tuple(v) for k, v in self.lists.items()})


def _hex(value: Any) -> str:
    return "0x" + bytes(HexBytes(value)).hex()


class Confirmer:
    def __init__(
        self,
        w3: AsyncWeb3[Any],
        sender: Sender,
        store: Store,
        config: ConfirmConfig | None = None,
        still_needed: StillNeeded = always_needed,
        policy: RetryPolicy = READ_POLICY,
        clock: Callable[[], float] = time.time,
        urgent_now: UrgentNow = never_urgent,
    ) -> None:
        self._w3 = w3
        self._sender = sender
        self._store = store
        self.config = config or ConfirmConfig()
        self._still_needed = still_needed
        self._urgent_now = urgent_now
        self._policy = policy
        self._clock = clock
        self.address = sender.address
        self._last_head: BlockRef | None = None

    # --- chain reads ------------------------------------------------------------------------

    async def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt on the node's canonical chain; None while there is none."""

        async def once() -> Receipt | None:
            try:
                got = await self._w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                return None
            return Receipt(int(got["blockNumber"]), _hex(got["blockHash"]), int(got["status"]))

        return await self._policy.call(once, "eth_getTransactionReceipt")

    async def is_known(self, tx_hash: str) -> bool:
        """Whether the node has the transaction (pending or mined)."""
        return await self._sender.known_to_node(tx_hash)

    async def block_hash_at(self, number: int) -> str | None:
        """The canonical hash at ``number``; None when the chain is shorter now."""

        async def once() -> str | None:
            try:
                block = await self._w3.eth.get_block(number)
            except BlockNotFound:
                return None
            return _hex(block["hash"])

        return await self._policy.call(once, "eth_getBlockByNumber")

    async def mined_count(self) -> int:
        """How many transactions of the keeper's address are mined (the next unused nonce)."""
        address = to_checksum_address(self.address)
        count = await self._policy.call(
            lambda: self._w3.eth.get_transaction_count(address, "latest"),
            "eth_getTransactionCount",
        )
        return int(count)

    # --- the two entry points -------------------------------------------------------------

    async def on_block(self, block: BlockRef) -> ConfirmReport:
        """Follow the journal at a new head: abandoned intents, reorgs, receipts, stuck
        transactions, use of the key outside the keeper."""
        tally = _Tally(block.number, replace_stuck=True)
        self._fail_stale_intents(tally)
        last = self._last_head
        extends_last = (
            last is not None and block.number == last.number + 1 and block.parent_hash == last.hash
        )
        # A head that extends the last one reorged nothing we processed; but receipts can come
        # from a block newer than the head being processed, and a reorg of that block would
        # not show as a break between our heads: those are checked every time.
        window = 0 if extends_last else self.config.reorg_window_blocks
        await self._check_reorgs(tally, since=block.number - window)
        self._last_head = block  # only once the check above has passed
        await self._settle_open(tally)
        await self._sender.nonces.detect_external_use()
        await self._fill_gaps(tally)
        return self._logged(tally.report(), "block", block.number)

    async def _fill_gaps(self, tally: _Tally) -> None:
        """A nonce given back below one still in flight (its transaction was refused after a
        later one was sent) holds up every later transaction: fill it at once with a 0-value
        self-transfer, as urgent as a cancel."""
        free = self._store.free_nonces(self.address)
        if not free:  # the usual case: one query and done
            return
        in_flight = [e.nonce for e in self._store.open_entries(self.address) if e.nonce is not None]
        if not in_flight:
            return
        highest = max(in_flight)
        for gap in (n for n in free if n < highest):
            filler = TxIntent(
                kind=TxKind.CANCEL,
                sender=self.address,
                to=self.address,
                data=b"",
                value_wei=0,
                gas_limit=CANCEL_GAS,
                urgent=True,
                payload={"fills_nonce": gap},
            )
            try:
                entry = await self._sender.submit(filler)
            except KeeperError as exc:
                log.error(
                    "could not fill a nonce gap: later transactions wait behind it",
                    extra={"fields": {"nonce": gap, "error": str(exc)}},
                )
                return
            tally.add("gap_filled_by", entry.id)
            log.warning(
                "nonce gap filled with a 0-value self-transfer",
                extra={"fields": {"nonce": entry.nonce, "entry": entry.id}},
            )

    async def reconcile(self) -> ConfirmReport:
        """At start: bring the journal in line with the chain without sending anything twice.

        Abandoned intents (never signed) fail and give their nonce back; signed entries are
        broadcast as the same bytes; sent ones are looked up (mined, dropped, or re-broadcast
        if the node forgot them); mined ones are checked for reorgs; nonces are resynced.
        """
        head = await self._sender.head()
        tally = _Tally(head, check_known=True)
        self._fail_stale_intents(tally)
        await self._check_reorgs(tally, since=head - self.config.reorg_window_blocks)
        await self._settle_open(tally)
        await self._sender.nonces.sync()
        return self._logged(tally.report(), "reconcile", head)

    def _fail_stale_intents(self, tally: _Tally) -> None:
        """Intents never signed (the keeper stopped, or was cancelled, half-way through
        ``Sender.prepare``) fail and give their nonce back, so it leaves no gap. Only stale
        ones: a young intent may belong to another instance that is signing right now."""
        cutoff = self._clock() - self.config.stale_intent_seconds
        for entry in self._store.entries_in([S.INTENT], self.address):
            if entry.updated_at <= cutoff:
                try:
                    self._store.mark_failed(entry.id, "never signed: the keeper stopped first")
                except JournalConflict:  # another instance failed it first
                    continue
                tally.add("failed", entry.id)

    # --- reorgs ----------------------------------------------------------------------------

    async def _check_reorgs(self, tally: _Tally, since: int) -> None:
        """Entries mined in block ``since`` or later whose block is no longer canonical go
        back to ``sent`` (and are broadcast again if the node forgot them)."""
        head = tally.head
        recent = [e for e in self._store.mined_since(since) if e.sender == self.address]
        canonical: dict[int, str | None] = {}
        for entry in recent:
            number = entry.mined_block_number
            if number is None:
                continue
            if number not in canonical:
                canonical[number] = await self.block_hash_at(number)
            if canonical[number] == entry.mined_block_hash:
                continue
            try:
                back = self._store.mark_reorged(entry.id, head)
            except JournalConflict:  # another instance saw the same reorg first
                continue
            tally.add("reorged", entry.id)
            log.warning(
                "reorg removed the block of a mined transaction",
                extra={
                    "fields": {
                        "entry": entry.id,
                        "block": number,
                        "stored": entry.mined_block_hash,
                        "now": canonical[number],
                    }
                },
            )
            if not await self.is_known(back.signed().tx_hash):
                await self._sender.rebroadcast(back, head)
                tally.add("rebroadcast", back.id)

    # --- open groups -----------------------------------------------------------------------

    async def _settle_open(self, tally: _Tally) -> None:
        open_nonces = sorted(
            {e.nonce for e in self._store.open_entries(self.address) if e.nonce is not None}
        )
        if not open_nonces:
            return
        mined_count = await self.mined_count()  # before the receipts: see _settle_group
        for nonce in open_nonces:
            try:
                await self._settle_group(nonce, mined_count, tally)
            except KeeperError as exc:
                tally.add("errors", f"nonce {nonce}: {type(exc).__name__}: {exc}")
                log.warning(
                    "could not settle a nonce group",
                    extra={"fields": {"nonce": nonce, "error": str(exc)}},
                )

    async def _settle_group(self, nonce: int, mined_count: int, tally: _Tally) -> None:
        head = tally.head
        group = self._store.entries_for_nonce(self.address, nonce)
        if await self._find_mined(group, tally):
            return
        # The count was read before the receipts, so a transaction of ours mined below it
        # would have shown a receipt: the nonce went to a transaction we did not journal.
        if nonce < mined_count:
            if await self._any_known(group):
                # ours, mined, but its receipt is not served yet (a lagging index or another
                # node behind a load balancer): dropping it would free the vault to send again
                log.info(
                    "nonce used by a transaction of ours without a receipt yet: wait",
                    extra={"fields": {"nonce": nonce}},
                )
                return
            for entry in group:
                if entry.state in OPEN_STATES:
                    self._store.mark_dropped(entry.id, "nonce used by another transaction")
                    tally.add("dropped", entry.id)
            return
        unsent = [e for e in group if e.state is S.SIGNED]
        if unsent:  # the node's verdict on these first; nothing new this block
            for entry in unsent:
                await self._sender.rebroadcast(entry, head)
                tally.add("rebroadcast", entry.id)
            return
        live = [e for e in group if e.state is S.SENT]
        if not live:
            return
        newest = live[-1]
        if tally.check_known and not await self.is_known(newest.signed().tx_hash):
            await self._sender.rebroadcast(newest, head)
            tally.add("rebroadcast", newest.id)
        sent_at = newest.sent_at_block if newest.sent_at_block is not None else head
        waited = head - sent_at
        if tally.replace_stuck and waited >= self.config.stuck_after_blocks:
            await self._unstick(newest, head, tally)

    async def _any_known(self, group: list[JournalEntry]) -> bool:
        for entry in group:
            if entry.tx_hash is not None and await self.is_known(entry.tx_hash):
                return True
        return False

    async def _find_mined(self, group: list[JournalEntry], tally: _Tally) -> bool:
        candidates = [
            e
            for e in reversed(group)
            if e.state in (S.SIGNED, S.SENT, S.REPLACED, S.CANCELLED, S.DROPPED)
        ]
        for entry in candidates:
            receipt = await self.receipt(entry.signed().tx_hash)
            if receipt is None:
                continue
            self._store.mark_mined(
                entry.id, receipt.block_number, receipt.block_hash, receipt.status
            )
            tally.add("mined", entry.id)
            log.info(
                "transaction mined",
                extra={
                    "fields": {
                        "entry": entry.id,
                        "block": receipt.block_number,
                        "status": receipt.status,
                        "hash": entry.tx_hash,
                    }
                },
            )
            return True
        return False

    async def _unstick(self, live: JournalEntry, head: int, tally: _Tally) -> None:
        try:
            if live.kind is TxKind.CANCEL or not await self._still_needed(live):
                new = await self._sender.cancel(live, head)
                tally.add("cancelled_by", new.id)
            else:
                new = await self._sender.replace(live, head, urgent=self._urgent_now(live))
                tally.add("replaced_by", new.id)
        except FeeCapExceeded as exc:
            tally.add("waiting_for_fees", live.id)
            log.warning(
                "stuck transaction waits for fees",
                extra={"fields": {"entry": live.id, "error": str(exc)}},
            )
        except RetryableError as exc:  # node trouble while checking or signing: next block
            log.warning(
                "stuck transaction left as it is until the next block",
                extra={"fields": {"entry": live.id, "error": str(exc)}},
            )

    @staticmethod
    def _logged(report: ConfirmReport, what: str, at: int) -> ConfirmReport:
        busy = {k: v for k, v in report.__dict__.items() if v}
        if busy:
            log.info(f"journal {what}", extra={"fields": {"at": at, **busy}})
        return report
