"""Following journaled transactions until they settle: receipts, reorgs, stuck or forgotten
transactions (re-decided first), and the reconciliation at start.

Entries with the same nonce form a group; exactly one of a group can be mined. Each block
the confirmer looks, per open group: a receipt for any of its transactions -> that entry
``mined``, the others ``dropped`` (``replaced``/``cancelled`` ones keep their state); no
receipt but the chain's nonce is past it -> someone else used the nonce, the open entries
are ``dropped``; otherwise, when the group needs a decision (unsent, re-checked after a
restart or a reorg, stuck), the actor's ``Redecide`` is asked and :func:`keeper.tx.stuck.plan`
says what to do. Only this module's own state (which groups to re-check, when a forgotten
transaction was broadcast again) lives here; nothing is shared with the actor.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3.exceptions import BlockNotFound, TransactionNotFound

from keeper import metrics
from keeper.chain.ahead import ReadAhead
from keeper.chain.eth import Chain
from keeper.chain.retry import READ_POLICY, RetryPolicy
from keeper.core.chaintrack import ChainUpdate
from keeper.core.types import BlockRef
from keeper.errors import (
    FeeCapExceeded,
    JournalConflict,
    KeeperError,
    RetryableError,
    SimulationReverted,
)
from keeper.store import OPEN_STATES, JournalEntry, JournalState, Store, TxIntent, TxKind
from keeper.tx.sender import CANCEL_GAS, Sender
from keeper.tx.stuck import Redecide, Step, Urgent, Verdict, Why, plan, urgent_vaults

log = logging.getLogger("keeper.confirm")
S = JournalState


@dataclass(frozen=True)
class ConfirmConfig:
    stuck_after_blocks: int = 3
    reorg_window_blocks: int = 64  # mined entries this recent are checked against the chain
    stale_intent_seconds: float = 30.0  # another instance's intents older than this died


@dataclass(frozen=True)
class Receipt:
    block_number: int
    block_hash: str
    status: int
    gas_used: int = 0
    effective_gas_price_wei: int = 0
    logs: Sequence[Mapping[str, Any]] = ()  # web3-shaped, as the node returned them


@dataclass(frozen=True)
class LifecycleReport:
    """Journal entry ids by what happened to them in one pass."""

    mined: tuple[int, ...] = ()
    dropped: tuple[int, ...] = ()
    replaced_by: tuple[int, ...] = ()  # new replacement entries
    cancelled_by: tuple[int, ...] = ()  # new cancel entries
    reorged: tuple[int, ...] = ()
    rebroadcast: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    waiting_for_fees: tuple[int, ...] = ()
    waiting_for_decision: tuple[int, ...] = ()  # Redecide said UNKNOWN
    gap_filled_by: tuple[int, ...] = ()  # new 0-value entries that fill a given-back nonce
    reverted: tuple[tuple[int, str], ...] = ()  # (entry, decoded reason): whole-tx reverts
    errors: tuple[str, ...] = ()
    receipts: tuple[tuple[int, Receipt], ...] = ()  # (entry, receipt) of each mined entry

    def receipt_of(self, entry_id: int) -> Receipt | None:
        return next((r for e, r in self.receipts if e == entry_id), None)


@dataclass
class _Tally:
    """One pass: its head, what it may do, and what happened (for ``LifecycleReport``)."""

    head: int
    redecide: Redecide
    urgent: Urgent = frozenset()
    lists: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, outcome: str, value: Any) -> None:
        self.lists.setdefault(outcome, []).append(value)

    def report(self) -> LifecycleReport:
        return LifecycleReport(**{k: tuple(v) for k, v in self.lists.items()})


def _hex(value: Any) -> str:
    return "0x" + bytes(HexBytes(value)).hex()


class Confirmer:
    def __init__(
        self,
        w3: Chain,
        sender: Sender,
        store: Store,
        config: ConfirmConfig | None = None,
        policy: RetryPolicy = READ_POLICY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._w3 = w3
        self._sender = sender
        self._store = store
        self.config = config or ConfirmConfig()
        self._policy = policy
        self._clock = clock
        self.address = sender.address
        self._last_head: BlockRef | None = None
        self._recheck: set[int] = set()  # group nonces to look at again (restart, reorg)
        self._resent_at: dict[int, int] = {}  # entry id -> block of its last re-broadcast
        self._ahead = ReadAhead()  # this head's chain reads, started alongside its multicall

    def drop_reads_ahead(self) -> None:
        """Cancel what was read ahead and not taken (at shutdown)."""
        self._ahead.begin(None)

    def read_ahead(self, block: BlockRef) -> None:
        """Start the reads :meth:`on_block` will make at ``block``: the canonical hashes of
        the blocks recent entries were mined in, the mined count and the receipts of the
        open entries (all at once: see ``_settle_group``)."""
        ahead = self._ahead
        ahead.begin(block.number)
        # A head above the last one is expected to link to it (the follower fetches and
        # links any blocks between): then only blocks past the head are asked about.
        last = self._last_head
        linking = last is not None and block.number > last.number
        since = block.number + 1 if linking else self._window_start(block.number)
        for number in {
            e.mined_block_number
            for e in self._store.mined_since(since)
            if e.sender == self.address and e.mined_block_number is not None
        }:
            ahead.start(("block", number), functools.partial(self._read_block_hash, number))
        hashes = [e.tx_hash for e in self._store.open_entries(self.address) if e.tx_hash]
        if not hashes:
            return
        ahead.start("mined_count", self._read_mined_count)
        # alongside the count: a receipt found is final whenever it was read; a receipt
        # missing where the count says the nonce is used is read again after the count
        # before anything is concluded from it (``_settle_group``)
        for tx_hash in hashes:
            ahead.start(
                ("receipt", tx_hash.lower()), functools.partial(self._read_receipt, tx_hash)
            )

    # --- chain reads ------------------------------------------------------------------------

    async def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt on the node's canonical chain; None while there is none."""

        return await self._policy.call(
            lambda: self._ahead.take(
                ("receipt", tx_hash.lower()), lambda: self._read_receipt(tx_hash)
            ),
            "eth_getTransactionReceipt",
        )

    async def _read_receipt(self, tx_hash: str) -> Receipt | None:
        try:
            got = await self._w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None
        return Receipt(
            int(got["blockNumber"]),
            _hex(got["blockHash"]),
            int(got["status"]),
            int(got.get("gasUsed", 0)),
            int(got.get("effectiveGasPrice", 0)),
            got.get("logs", ()),  # formatted when read (``keeper.chain.eth.Logs``)
        )

    async def is_known(self, tx_hash: str) -> bool:
        """Whether the node has the transaction (pending or mined)."""
        return await self._sender.known_to_node(tx_hash)

    async def block_hash_at(self, number: int) -> str | None:
        """The canonical hash at ``number``; None when the chain is shorter now."""

        return await self._policy.call(
            lambda: self._ahead.take(("block", number), lambda: self._read_block_hash(number)),
            "eth_getBlockByNumber",
        )

    async def _read_block_hash(self, number: int) -> str | None:
        try:
            block = await self._w3.eth.get_block(number)
        except BlockNotFound:
            return None
        return _hex(block["hash"])

    async def mined_count(self) -> int:
        """How many transactions of the keeper's address are mined (the next unused nonce)."""
        return await self._policy.call(
            lambda: self._ahead.take("mined_count", self._read_mined_count),
            "eth_getTransactionCount",
        )

    async def _read_mined_count(self) -> int:
        address = to_checksum_address(self.address)
        return int(await self._w3.eth.get_transaction_count(address, "latest"))

    async def revert_reason(self, entry: JournalEntry, block_number: int) -> str:
        """Why a mined transaction reverted as a whole: its call replayed on the state and in
        the environment (timestamp) of the block it was mined in."""
        call = {
            "from": self.address,
            "to": entry.to,
            "data": entry.data,
            "value": entry.value_wei,
            "gas": entry.gas_limit,
        }
        try:
            await self._policy.call(
                lambda: self._w3.eth.call(call, block_identifier=block_number),  # type: ignore[arg-type]
                f"replaying reverted entry {entry.id}",
            )
        except SimulationReverted as exc:
            return exc.reason
        except KeeperError as exc:
            return f"unknown ({type(exc).__name__}: {exc})"
        return "unknown (the call does not revert when replayed)"

    # --- the two entry points -------------------------------------------------------------

    async def on_block(
        self,
        block: BlockRef,
        redecide: Redecide,
        urgent: Urgent = frozenset(),
        chain: ChainUpdate | None = None,
    ) -> LifecycleReport:
        """Follow the journal at a new head: abandoned intents, reorgs, receipts, groups
        needing a decision (``redecide`` and ``urgent`` may wait for the block's decisions),
        use of the key outside the keeper. ``chain``: how the follower linked ``block`` (its
        verified blocks spare asking the node for their hashes)."""
        if self._ahead.head != block.number:  # nothing was read ahead for this head
            self._ahead.begin(block.number)
        tally = _Tally(block.number, redecide, urgent)
        self._fail_intents(tally, older_than=self.config.stale_intent_seconds)
        since, verified = self._reorg_scope(block, chain)
        await self._check_reorgs(tally, since, verified)
        self._last_head = block  # only once the check above has passed
        await self._settle_open(tally)
        await self._sender.nonces.detect_external_use()
        await self._fill_gaps(tally)
        return self._logged(tally.report(), "block", block.number)

    def _reorg_scope(
        self, block: BlockRef, chain: ChainUpdate | None
    ) -> tuple[int, dict[int, str]]:
        """The first block whose mined entries are checked at ``block``, and the canonical
        hashes known without asking the node.

        When the follower linked ``block`` to the last head (directly, or through the blocks
        between, each linked by its parent hash) nothing we processed was reorged: only the
        entries mined after the last head are checked (receipts can come from blocks newer
        than the head then being processed), against the linked blocks' hashes; the node is
        asked only about blocks past ``block``. Otherwise (a reorg, an unverified gap, the
        first head) every entry of the reorg window is checked against the node."""
        if chain is not None and (chain.reorg or chain.unverified_gap):
            return self._window_start(block.number), {}
        last = self._last_head
        segment = (block,) if chain is None else chain.added
        if (
            last is not None
            and segment
            and segment[-1].number == block.number
            and segment[0].number == last.number + 1
            and segment[0].parent_hash == last.hash
        ):
            return last.number + 1, {b.number: b.hash for b in segment}
        return self._window_start(block.number), {}

    def _window_start(self, head: int) -> int:
        """The first block of the reorg window at ``head``: every entry mined in it or later
        is checked against the node when the head's link to the last one is not known."""
        return head - self.config.reorg_window_blocks

    async def reconcile(self, redecide: Redecide) -> LifecycleReport:
        """At start: bring the journal in line with the chain without sending anything twice
        or anything stale.

        Intents never signed fail at once and give their nonce back (they have no bytes, and
        an instance still signing one finds it failed and does not broadcast); mined entries
        are checked for reorgs; every open group is re-checked (``Redecide`` first: the node
        may have forgotten it and the price may have come back); nonces are resynced.
        """
        head = await self._sender.head()
        tally = _Tally(head, redecide)
        self._fail_intents(tally, older_than=0.0)
        await self._check_reorgs(tally, since=self._window_start(head))
        self._recheck |= {
            e.nonce for e in self._store.open_entries(self.address) if e.nonce is not None
        }
        await self._settle_open(tally)
        await self._sender.nonces.sync()
        return self._logged(tally.report(), "reconcile", head)

    def _fail_intents(self, tally: _Tally, older_than: float) -> None:
        """Intents never signed fail and give their nonce back, so they leave no gap and
        block no vault. ``Sender.prepare`` journals an intent and its signature in one
        transaction, so these come from a journal an earlier version wrote (it committed
        the intent first) or from ``Store.create_intent``; failing one that is being signed
        is still safe: its ``signed`` move is conditional, so it never broadcasts."""
        cutoff = self._clock() - older_than
        for entry in self._store.entries_in([S.INTENT], self.address):
            if entry.updated_at <= cutoff:
                try:
                    self._store.mark_failed(entry.id, "never signed: the keeper stopped first")
                except JournalConflict:  # another instance failed or signed it first
                    continue
                tally.add("failed", entry.id)

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

    # --- reorgs ----------------------------------------------------------------------------

    async def _check_reorgs(
        self, tally: _Tally, since: int, verified: Mapping[int, str] | None = None
    ) -> None:
        """Entries mined in block ``since`` or later whose block is no longer canonical go
        back to ``sent`` and their group is re-checked: re-decided before anything is sent
        (the reorg may also have removed the state they were computed from). ``verified``:
        canonical hashes already known (the node is asked about the other blocks)."""
        head = tally.head
        recent = [e for e in self._store.mined_since(since) if e.sender == self.address]
        canonical: dict[int, str | None] = dict(verified or {})
        for entry in recent:
            number = entry.mined_block_number
            if number is None:
                continue
            if number not in canonical:
                canonical[number] = await self.block_hash_at(number)
            if canonical[number] == entry.mined_block_hash:
                continue
            try:
                self._store.mark_reorged(entry.id, head)
            except JournalConflict:  # another instance saw the same reorg first
                continue
            tally.add("reorged", entry.id)
            if entry.nonce is not None:
                self._recheck.add(entry.nonce)
            log.warning(
                "reorg removed the block of a mined transaction: re-deciding it",
                extra={
                    "fields": {
                        "entry": entry.id,
                        "block": number,
                        "stored": entry.mined_block_hash,
                        "now": canonical[number],
                    }
                },
            )

    # --- open groups -----------------------------------------------------------------------

    async def _settle_open(self, tally: _Tally) -> None:
        open_nonces = sorted(
            {e.nonce for e in self._store.open_entries(self.address) if e.nonce is not None}
        )
        self._recheck &= set(open_nonces)
        if not open_nonces:
            return
        mined_count = await self.mined_count()  # before the receipts: see _settle_group
        for nonce in open_nonces:
            try:
                await self._settle_group(nonce, mined_count, tally)
            except JournalConflict as exc:  # another instance on the database moved it first
                log.info(
                    "nonce group moved by another instance",
                    extra={"fields": {"nonce": nonce, "detail": str(exc)}},
                )
            except KeeperError as exc:
                tally.add("errors", f"nonce {nonce}: {type(exc).__name__}: {exc}")
                log.warning(
                    "could not settle a nonce group",
                    extra={"fields": {"nonce": nonce, "error": str(exc)}},
                )

    async def _settle_group(self, nonce: int, mined_count: int, tally: _Tally) -> None:
        group = self._store.entries_for_nonce(self.address, nonce)
        if await self._find_mined(group, tally):
            self._recheck.discard(nonce)
            return
        # The receipts were read ahead, alongside the count: one of ours mined in between
        # shows a used nonce and no receipt. Read after the count, a transaction of ours mined
        # below it shows a receipt: without one, the nonce went to a transaction we did not
        # journal.
        if nonce < mined_count and await self._find_mined(group, tally):
            self._recheck.discard(nonce)
            return
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
            self._recheck.discard(nonce)
            return
        live = [e for e in group if e.state in OPEN_STATES]
        if not live:
            return
        newest = live[-1]
        why = self._why(newest, nonce, tally.head)
        if why is not None:
            await self._decide(newest, why, tally)

    def _why(self, entry: JournalEntry, nonce: int, head: int) -> Why | None:
        if entry.state is S.SIGNED:
            return Why.UNSENT
        if nonce in self._recheck:
            return Why.RECHECK
        sent_at = head if entry.sent_at_block is None else entry.sent_at_block
        sent_at = max(sent_at, self._resent_at.get(entry.id, 0))
        if head - sent_at >= self.config.stuck_after_blocks:
            return Why.STUCK
        return None

    async def _verdict(self, entry: JournalEntry, tally: _Tally) -> Verdict:
        if entry.kind is TxKind.CANCEL:  # a cancel (or a gap filler) is always wanted
            return Verdict.STILL_WANTED
        try:
            return await tally.redecide(entry)
        except RetryableError as exc:  # the state could not be read: we do not know
            log.info(
                "re-decision unknown: waiting",
                extra={"fields": {"entry": entry.id, "error": str(exc)}},
            )
            return Verdict.UNKNOWN

    async def _decide(self, entry: JournalEntry, why: Why, tally: _Tally) -> None:
        verdict = await self._verdict(entry, tally)
        known = False
        if why is Why.RECHECK and verdict is Verdict.STILL_WANTED:
            known = await self.is_known(entry.signed().tx_hash)
        step = plan(why, verdict, known)
        log.info(
            "journal entry re-decided",
            extra={
                "fields": {
                    "entry": entry.id,
                    "nonce": entry.nonce,
                    "why": why.value,
                    "verdict": verdict.value,
                    "step": step.value,
                }
            },
        )
        try:
            await self._take(step, entry, tally)
        except FeeCapExceeded as exc:
            tally.add("waiting_for_fees", entry.id)
            log.info(
                "open transaction waits for fees",
                extra={"fields": {"entry": entry.id, "step": step.value, "error": str(exc)}},
            )
            return
        except RetryableError as exc:  # node trouble while signing or sending: next block
            log.warning(
                "open transaction left as it is until the next block",
                extra={"fields": {"entry": entry.id, "step": step.value, "error": str(exc)}},
            )
            return
        if step is not Step.WAIT and entry.nonce is not None:
            self._recheck.discard(entry.nonce)

    async def _take(self, step: Step, entry: JournalEntry, tally: _Tally) -> None:
        head = tally.head
        if step is Step.WAIT:
            tally.add("waiting_for_decision", entry.id)
        elif step is Step.REBROADCAST:
            await self._sender.rebroadcast(entry, head)
            self._resent_at[entry.id] = head
            tally.add("rebroadcast", entry.id)
        elif step is Step.REPLACE:
            urgent = entry.kind is TxKind.REBALANCE and bool(
                set(entry.vaults) & await urgent_vaults(tally.urgent)
            )
            new = await self._sender.replace(entry, head, urgent=urgent)
            tally.add("replaced_by" if new.state is S.SENT else "failed", new.id)
        elif step is Step.CANCEL:
            new = await self._sender.cancel(entry, head)
            tally.add("cancelled_by" if new.state is S.SENT else "failed", new.id)

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
            metrics.tx_mined(
                entry.kind.value,
                receipt.gas_used,
                receipt.effective_gas_price_wei,
                entry.sent_at_block if entry.sent_at_block is not None else receipt.block_number,
                receipt.block_number,
            )
            tally.add("mined", entry.id)
            tally.add("receipts", (entry.id, receipt))
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
            if receipt.status == 0:
                reason = await self.revert_reason(entry, receipt.block_number)
                tally.add("reverted", (entry.id, reason))
            return True
        return False

    @staticmethod
    def _logged(report: LifecycleReport, what: str, at: int) -> LifecycleReport:
        busy = {k: v for k, v in report.__dict__.items() if v and k != "receipts"}
        if busy:
            log.info(f"journal {what}", extra={"fields": {"at": at, **busy}})
        return report
