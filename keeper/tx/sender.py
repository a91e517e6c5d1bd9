"""Building, signing, journaling and broadcasting EIP-1559 transactions.

The order is what makes a crash harmless: the intent is journaled, a nonce claimed, the
transaction signed and its raw bytes journaled (``signed``) BEFORE anything is broadcast;
only then is it sent and journaled ``sent``. Whatever is re-broadcast later (a retry, a
restart, a reorg) is the SAME journaled bytes, never a new signature for the same work; a
new signature is made only for a deliberate same-nonce replacement or cancel.

Broadcasts go to a private send-only RPC (Flashbots-Protect style) when one is configured,
falling back to the public node when the private one is unreachable or refuses. The private
relay sits behind a circuit breaker (:class:`GuardedRelay`): it gets a short timeout, and one
that fails or does not answer in time is skipped for a cool-down, so a dead relay costs one
timeout per cool-down rather than every send. The block a transaction counts as sent in is
read AFTER the broadcast returned, so a slow broadcast never makes it look older than it is.

Every fee bump is computed from the highest fees already signed for the nonce (a refused
attempt included), so a new attempt always signs NEW bytes; bytes the journal already holds
are never journaled twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_utils.address import to_checksum_address
from web3.exceptions import TransactionNotFound

from keeper.chain.ahead import ReadAhead
from keeper.chain.eth import Chain
from keeper.chain.retry import BROADCAST_POLICY, READ_POLICY, RetryPolicy
from keeper.core.fees import (
    FeeHistory,
    FeePolicy,
    FeeQuote,
    FeeVerdict,
    WaitForFees,
    quote_cancel,
    quote_new,
    quote_replacement,
)
from keeper.errors import (
    AlreadyKnown,
    ConfigError,
    FatalError,
    FeeCapExceeded,
    InsufficientFunds,
    JournalConflict,
    NonceTooLow,
    RetryableError,
    RpcError,
    RpcTimeout,
    Underpriced,
)
from keeper.store import JournalEntry, JournalState, SignedTx, Store, TxIntent, TxKind
from keeper.tx.nonces import NonceManager

log = logging.getLogger("keeper.sender")

CANCEL_GAS = 21_000


class Signer(Protocol):
    """A ``LocalAccount`` or anything that signs like one."""

    @property
    def address(self) -> Any: ...

    def sign_transaction(self, transaction_dict: Any) -> Any: ...


class Broadcaster(Protocol):
    name: str

    async def send_raw(self, raw: bytes) -> None:
        """Hand raw signed bytes to a node; raises a ``KeeperError`` when it refuses."""


class ChainBroadcaster:
    """``eth_sendRawTransaction`` through one :class:`keeper.chain.eth.Chain`."""

    def __init__(self, w3: Chain, name: str, policy: RetryPolicy = BROADCAST_POLICY):
        self._w3 = w3
        self.name = name
        self._policy = policy

    async def send_raw(self, raw: bytes) -> None:
        await self._policy.call(
            lambda: self._w3.eth.send_raw_transaction(raw), f"eth_sendRawTransaction ({self.name})"
        )


class Unsent(RpcError):
    """The node could not be reached for a first broadcast: the entry stays ``signed``."""

    def __init__(self, entry_id: int, detail: str) -> None:
        super().__init__(f"entry {entry_id} signed, not broadcast: {detail}")
        self.entry_id = entry_id


class GuardedRelay:
    """A circuit breaker around a (private) broadcaster: a short timeout per send, and after
    a failure or a timeout the relay is skipped for ``cooldown_seconds`` (``RpcError``
    without a request while open)."""

    def __init__(
        self,
        inner: Broadcaster,
        timeout_seconds: float = 1.5,
        cooldown_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self.name = inner.name
        self._timeout = timeout_seconds
        self._cooldown = cooldown_seconds
        self._clock = clock
        self.open_until: float | None = None
        self.trips = 0

    def is_open(self) -> bool:
        return self.open_until is not None and self._clock() < self.open_until

    async def send_raw(self, raw: bytes) -> None:
        if self.is_open():
            raise RpcError(f"{self.name} relay skipped: circuit open after a failure")
        try:
            await asyncio.wait_for(self._inner.send_raw(raw), self._timeout)
        except TimeoutError:
            self._trip(f"no answer within {self._timeout} s")
            raise RpcTimeout(f"{self.name} relay: no answer within {self._timeout} s") from None
        except (RpcError, FatalError) as exc:
            if not isinstance(exc, (AlreadyKnown, NonceTooLow, Underpriced)):
                self._trip(str(exc))
            raise
        self.open_until = None

    def _trip(self, why: str) -> None:
        self.trips += 1
        self.open_until = self._clock() + self._cooldown
        log.warning(
            "private relay failing: skipped for a while",
            extra={"fields": {"relay": self.name, "why": why, "seconds": self._cooldown}},
        )


@dataclass(frozen=True)
class SenderConfig:
    fees: FeePolicy = field(default_factory=FeePolicy)
    fee_history_blocks: int = 10
    gas_headroom_bps: int = 2_000  # estimate x 1.2
    resend_after_nonce_conflict: bool = True  # one fresh nonce after "nonce too low"
    low_balance_wei: int = 0  # warn when a send would leave the account below this


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class Sender:
    def __init__(
        self,
        w3: Chain,
        signer: Signer,
        store: Store,
        nonces: NonceManager,
        config: SenderConfig | None = None,
        private: Broadcaster | None = None,
        policy: RetryPolicy = READ_POLICY,
        public: Broadcaster | None = None,
    ) -> None:
        """``public`` is where every transaction goes (after ``private``, when there is one):
        by default ``w3``'s node; the keeper passes an ``RpcBroadcaster`` (every healthy
        endpoint, fenced by the leader lease)."""
        self._w3 = w3
        self._signer = signer
        self._store = store
        self.nonces = nonces
        self.config = config or SenderConfig()
        self._policy = policy
        self.address = to_checksum_address(signer.address)
        if nonces.address != self.address:
            raise ConfigError("the nonce manager and the signer are for different addresses")
        public = public or ChainBroadcaster(w3, "public")
        self._routes: Sequence[Broadcaster] = (private, public) if private else (public,)
        self._chain_id: int | None = None
        self._newest: int | None = None  # the block fees are judged at (the keeper's head)
        self._ahead = ReadAhead()  # this head's fee history and balance, read early
        # (head, what the balance read at it leaves after the worst-case cost of every
        # transaction signed since): a block's later transactions are checked against it
        self._funds_left: tuple[int | None, int] | None = None

    # --- chain reads --------------------------------------------------------------------

    async def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(await self._policy.call(lambda: self._w3.eth.chain_id))
        return self._chain_id

    async def head(self) -> int:
        return int(await self._policy.call(lambda: self._w3.eth.block_number, "eth_blockNumber"))

    def at_block(self, number: int) -> None:
        """Fees are judged at this block from now on (the block the keeper is processing):
        the fee gate and every transaction of the block ask about the same block, so one
        ``eth_feeHistory`` answers them all (``keeper.chain.eth`` remembers it)."""
        self._newest = number

    def drop_reads_ahead(self) -> None:
        """Cancel what was read ahead and not taken (at shutdown)."""
        self._ahead.begin(None)

    def read_ahead(self, head: int) -> None:
        """Start what a transaction at ``head`` reads first: the block's fee history and the
        account's balance (each answered once; a second transaction reads the balance again)."""
        self.at_block(head)
        self._ahead.begin(head)
        self._ahead.start(("fees", head), self._read_fee_history)
        self._ahead.start("balance", self._read_balance)

    async def fee_history(self) -> FeeHistory:
        key = ("fees", self._newest)
        return await self._policy.call(
            lambda: self._ahead.take(key, self._read_fee_history), "eth_feeHistory"
        )

    async def _read_fee_history(self) -> FeeHistory:
        percentile = self.config.fees.reward_percentile
        newest: int | str = "latest" if self._newest is None else self._newest
        raw = await self._w3.eth.fee_history(self.config.fee_history_blocks, newest, [percentile])
        return FeeHistory(
            base_fees=tuple(int(b) for b in raw["baseFeePerGas"]),
            rewards=tuple(tuple(int(r) for r in row) for row in raw.get("reward", [])),
            percentiles=(percentile,),
            gas_used_ratios=tuple(float(g) for g in raw.get("gasUsedRatio", [])),
        )

    async def _gas_limit(self, intent: TxIntent) -> int:
        if intent.gas_limit is not None:
            return intent.gas_limit
        call = {
            "from": self.address,
            "to": to_checksum_address(intent.to),
            "data": intent.data,
            "value": intent.value_wei,
        }
        estimate = await self._policy.call(
            lambda: self._w3.eth.estimate_gas(call),  # type: ignore[arg-type]
            "eth_estimateGas",
        )
        return int(estimate) * (10_000 + self.config.gas_headroom_bps) // 10_000

    # --- signing ---------------------------------------------------------------------------

    async def _sign(
        self, nonce: int, to: str, value_wei: int, data: bytes, gas: int, fees: FeeQuote
    ) -> SignedTx:
        return self._signed(await self.chain_id(), nonce, to, value_wei, data, gas, fees)

    def _signed(
        self,
        chain_id: int,
        nonce: int,
        to: str,
        value_wei: int,
        data: bytes,
        gas: int,
        fees: FeeQuote,
    ) -> SignedTx:
        signed = self._signer.sign_transaction(
            {
                "type": 2,
                "chainId": chain_id,
                "nonce": nonce,
                "to": to_checksum_address(to),
                "value": value_wei,
                "data": data,
                "gas": gas,
                "maxFeePerGas": fees.max_fee_wei,
                "maxPriorityFeePerGas": fees.priority_fee_wei,
            }
        )
        return SignedTx(
            nonce=nonce,
            chain_id=chain_id,
            gas_limit=gas,
            max_fee_wei=fees.max_fee_wei,
            priority_fee_wei=fees.priority_fee_wei,
            tx_hash=_hex(signed.hash),
            raw_tx=bytes(signed.raw_transaction),
        )

    def _signer_for(
        self, chain_id: int, intent: TxIntent, gas: int, fees: FeeQuote
    ) -> Callable[[int, frozenset[str]], SignedTx]:
        """Signs ``intent`` at the nonce it is given; when an earlier attempt on that nonce
        (refused, failed, its nonce given back) produced the very same bytes (``taken``),
        both fees go up by 1 wei: new bytes."""

        def sign(nonce: int, taken: frozenset[str]) -> SignedTx:
            quote = fees
            while True:
                signed = self._signed(
                    chain_id, nonce, intent.to, intent.value_wei, intent.data, gas, quote
                )
                if signed.tx_hash not in taken:
                    return signed
                quote = FeeQuote(quote.max_fee_wei + 1, quote.priority_fee_wei + 1)

        return sign

    async def _check_funds(self, worst_case_wei: int) -> int:
        """Refuse before a nonce is claimed when the account cannot pay ``gas x max fee +
        value``; warn when paying would leave it below ``low_balance_wei``. The balance is
        read once per head; a block's later transactions are checked against what it leaves
        after the worst-case cost of those signed before them (a pending transaction
        costs at most that), so they wait for no second read. Returns the balance checked."""
        balance = await self._balance_left()
        if balance < worst_case_wei:
            raise InsufficientFunds(
                f"the keeper account {self.address} holds {balance / 10**18:.6f} ETH, the "
                f"transaction may cost up to {worst_case_wei / 10**18:.6f} ETH: fund the account"
            )
        if balance - worst_case_wei < self.config.low_balance_wei:
            log.warning(
                "keeper account balance low: fund it",
                extra={
                    "fields": {
                        "account": self.address,
                        "balance_eth": balance / 10**18,
                        "low_balance_eth": self.config.low_balance_wei / 10**18,
                    }
                },
            )
        return balance

    async def _balance_left(self) -> int:
        left = self._funds_left
        if left is not None and self._newest is not None and left[0] == self._newest:
            return left[1]
        return int(
            await self._policy.call(
                lambda: self._ahead.take("balance", self._read_balance), "eth_getBalance"
            )
        )

    def _spend(self, worst_case_wei: int, balance_wei: int) -> None:
        """A transaction was signed: what the head's balance leaves for the next one."""
        self._funds_left = (self._newest, balance_wei - worst_case_wei)

    def refund(self, entry: JournalEntry) -> None:
        """A signed ``entry`` will not be sent (withdrawn): the head's balance no longer
        reserves its worst-case cost for it."""
        left = self._funds_left
        if left is None or left[0] != self._newest or entry.gas_limit is None:
            return
        worst_case = _worst_case(entry.gas_limit, entry.max_fee_wei or 0, entry.value_wei)
        self._funds_left = (left[0], left[1] + worst_case)

    async def _read_balance(self) -> int:
        return int(await self._w3.eth.get_balance(self.address, "pending"))

    @staticmethod
    def _go(verdict: FeeVerdict, what: str) -> FeeQuote:
        if isinstance(verdict, WaitForFees):
            raise FeeCapExceeded(
                f"{what} waits: {verdict.reason} (next base fee {verdict.next_base_fee_wei} wei, "
                f"tip {verdict.priority_fee_wei} wei, cap {verdict.cap_wei} wei)"
            )
        return verdict.quote

    # --- new transactions ---------------------------------------------------------------------

    async def new_fees(self, intent: TxIntent) -> FeeQuote:
        """Fees for a new transaction; ``FeeCapExceeded`` (nothing journaled) above the cap."""
        verdict = quote_new(await self.fee_history(), self.config.fees, intent.urgent)
        return self._go(verdict, f"{intent.kind} for {list(intent.vaults)}")

    async def submit(self, intent: TxIntent, fees: FeeQuote | None = None) -> JournalEntry:
        """Journal, sign and broadcast ``intent``; returns the entry in state ``sent``.

        ``FeeCapExceeded`` when fees are above the cap (nothing journaled), ``RpcError`` when
        the node could not be reached (the entry stays ``signed``; the lifecycle re-decides
        it before its bytes are broadcast again).
        """
        fees = fees or await self.new_fees(intent)
        return await self.send_prepared(intent, fees, await self.prepare(intent, fees))

    async def send_prepared(
        self, intent: TxIntent, fees: FeeQuote, entry: JournalEntry
    ) -> JournalEntry:
        """Broadcast ``entry``, which :meth:`prepare` signed for ``intent`` at ``fees``; on a
        nonce conflict, signed once more at a fresh nonce (``resend_after_nonce_conflict``)."""
        try:
            return await self._broadcast_signed(entry)
        except (NonceTooLow, Underpriced) as exc:
            if not self.config.resend_after_nonce_conflict:
                raise
            log.warning(
                "nonce conflict: resyncing and signing once more with a fresh nonce",
                extra={"fields": {"entry": entry.id, "nonce": entry.nonce, "error": str(exc)}},
            )
            await self.nonces.sync()
            return await self._broadcast_signed(await self.prepare(intent, fees))

    async def _broadcast_signed(self, entry: JournalEntry) -> JournalEntry:
        try:
            return await self.broadcast(entry)
        except (NonceTooLow, Underpriced):
            raise
        except RetryableError as exc:  # the entry stays signed: say which one
            raise Unsent(entry.id, str(exc)) from exc

    async def prepare(self, intent: TxIntent, fees: FeeQuote) -> JournalEntry:
        """Check the gas limit, the funds and the nonces, then journal the intent, claim a
        nonce, sign and journal the raw bytes in one store transaction.

        Returns the entry in state ``signed``; nothing has been broadcast. A failure before
        or inside that transaction journals nothing (no nonce taken, no vault claimed);
        ``JournalConflict`` when a vault of the intent is in flight.
        """
        if to_checksum_address(intent.sender) != self.address:
            raise ConfigError(f"intent sender {intent.sender} is not the keeper's {self.address}")
        gas = await self._gas_limit(intent)
        worst_case = _worst_case(gas, fees.max_fee_wei, intent.value_wei)
        balance = await self._check_funds(worst_case)
        await self.nonces.ensure_synced()
        sign = self._signer_for(await self.chain_id(), intent, gas, fees)
        # One commit, the one that must be durable before the bytes reach a node.
        entry = self._store.journal_and_sign(intent, sign)
        self._spend(worst_case, balance)
        signed = entry.signed()
        log.info(
            "transaction signed",
            extra={
                "fields": {
                    "entry": entry.id,
                    "nonce": signed.nonce,
                    "hash": signed.tx_hash,
                    "gas_limit": signed.gas_limit,
                    "max_fee": fees.max_fee_wei,
                    "tip": fees.priority_fee_wei,
                }
            },
        )
        return entry

    async def broadcast(self, entry: JournalEntry) -> JournalEntry:
        """First broadcast of a freshly ``signed`` entry; journals the node's verdict. The
        block it counts as sent in is read after the broadcast (blocks waited count from
        the broadcast, not from the attempt)."""
        try:
            await self._send_raw(entry.signed().raw_tx)
        except NonceTooLow as exc:
            # Our own bytes may be what used the nonce: an earlier try reached the node and
            # its answer was lost. Then it is sent, and signing the work again would send it
            # twice; only a nonce used by a transaction the node does not know is "dropped".
            if not await self.known_to_node(entry.signed().tx_hash):
                self._store.mark_dropped(entry.id, f"nonce used by another transaction: {exc}")
                raise
            log.warning(
                "nonce too low for bytes the node already has: counted as sent",
                extra={"fields": {"entry": entry.id, "hash": entry.tx_hash}},
            )
        except (Underpriced, FatalError) as exc:
            self._store.mark_failed(entry.id, f"refused by the node: {exc}")
            raise
        sent = self._store.mark_sent(entry.id, await self.head())
        log.info("transaction sent", extra={"fields": {"entry": sent.id, "hash": sent.tx_hash}})
        return sent

    async def known_to_node(self, tx_hash: str) -> bool:
        """Does the node have this transaction (pending or mined)?"""

        async def lookup() -> bool:
            try:
                await self._w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return False
            return True

        return await self._policy.call(lookup, f"eth_getTransactionByHash {tx_hash}")

    async def _send_raw(self, raw: bytes) -> None:
        """Private route first; the public node when it fails. ``already known`` is success."""
        for route in self._routes:
            last = route is self._routes[-1]
            try:
                await route.send_raw(raw)
                return
            except AlreadyKnown:
                return
            except (RpcError, FatalError) as exc:
                if last:
                    raise
                log.warning(
                    "private broadcast failed: falling back to the public node",
                    extra={"fields": {"route": route.name, "error": str(exc)}},
                )

    # --- the same bytes again, replacements, cancels ------------------------------------------

    async def rebroadcast(self, entry: JournalEntry, at_block: int) -> JournalEntry:
        """Send the journaled bytes of a ``signed`` or ``sent`` entry again.

        ``nonce too low`` is left to the confirmer (it looks for the receipt of the group);
        an underpriced or refused ``signed`` entry is ``failed``.
        """
        try:
            await self._send_raw(entry.signed().raw_tx)
        except NonceTooLow:
            return entry
        except (Underpriced, FatalError) as exc:
            if entry.state is JournalState.SIGNED:
                return self._store.mark_failed(entry.id, f"refused by the node: {exc}")
            log.warning(
                "re-broadcast refused", extra={"fields": {"entry": entry.id, "error": str(exc)}}
            )
            return entry
        log.info("re-broadcast", extra={"fields": {"entry": entry.id, "hash": entry.tx_hash}})
        if entry.state is JournalState.SIGNED:
            return self._store.mark_sent(entry.id, max(at_block, await self.head()))
        return entry

    def highest_fees(self, live: JournalEntry) -> FeeQuote:
        """The highest fees signed so far for ``live``'s nonce, refused attempts included:
        the floor every bump starts from, so a new attempt is always new bytes."""
        old = live.signed()
        group = self._store.entries_for_nonce(self.address, old.nonce)
        return FeeQuote(
            max([old.max_fee_wei, *(e.max_fee_wei for e in group if e.max_fee_wei)]),
            max([old.priority_fee_wei, *(e.priority_fee_wei for e in group if e.priority_fee_wei)]),
        )

    def _journal_successor(
        self, live: JournalEntry, kind: TxKind, to: str, value: int, data: bytes, signed: SignedTx
    ) -> JournalEntry:
        known = {e.tx_hash for e in self._store.entries_for_nonce(self.address, signed.nonce)}
        if signed.tx_hash in known:  # never the journal's UNIQUE tx_hash: these bytes exist
            raise JournalConflict(f"entry {live.id}: the new signature equals an earlier one")
        return self._store.add_successor(live.id, kind, to, value, data, signed)

    async def replace(
        self, live: JournalEntry, at_block: int, urgent: bool = False
    ) -> JournalEntry:
        """A same-nonce copy of ``live`` with both fees raised by at least 12.5% over the
        highest signed for that nonce; up to the emergency cap when ``live`` was urgent or
        its work has become urgent since."""
        old = live.signed()
        verdict = quote_replacement(
            self.highest_fees(live),
            await self.fee_history(),
            self.config.fees,
            live.urgent or urgent,
        )
        fees = self._go(verdict, f"replacement of entry {live.id}")
        signed = await self._sign(
            old.nonce, live.to, live.value_wei, live.data, old.gas_limit, fees
        )
        new = self._journal_successor(live, live.kind, live.to, live.value_wei, live.data, signed)
        log.info(
            "replacing a stuck transaction",
            extra={
                "fields": {
                    "old": live.id,
                    "new": new.id,
                    "nonce": old.nonce,
                    "max_fee": fees.max_fee_wei,
                    "tip": fees.priority_fee_wei,
                }
            },
        )
        return await self.rebroadcast(new, at_block)

    async def cancel(self, live: JournalEntry, at_block: int) -> JournalEntry:
        """A 0-value self-transfer with ``live``'s nonce, so its work never executes."""
        old = live.signed()
        verdict = quote_cancel(
            self.highest_fees(live),
            await self.fee_history(),
            self.config.fees,
        )
        fees = self._go(verdict, f"cancel of entry {live.id}")
        signed = await self._sign(old.nonce, self.address, 0, b"", CANCEL_GAS, fees)
        new = self._journal_successor(live, TxKind.CANCEL, self.address, 0, b"", signed)
        log.info(
            "cancelling a transaction no longer needed",
            extra={"fields": {"old": live.id, "new": new.id, "nonce": old.nonce}},
        )
        return await self.rebroadcast(new, at_block)


def _worst_case(gas_limit: int, max_fee_wei: int, value_wei: int) -> int:
    """The most a transaction can cost its sender: all its gas at the max fee, and its value."""
    return gas_limit * max_fee_wei + value_wei
