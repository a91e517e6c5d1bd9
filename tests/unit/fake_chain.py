"""A tiny in-memory chain behind an ``AsyncWeb3``-shaped object, for the sending side's edge
cases that a real node will not produce on demand (lost answers, lagging receipt indexes,
receipts from a block newer than the head being processed). Signing is real (eth-account)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3.exceptions import BlockNotFound, TransactionNotFound

from keeper.chain.retry import RetryPolicy
from keeper.core.types import BlockRef
from keeper.errors import AlreadyKnown, NonceTooLow
from keeper.store import JournalEntry, Store, TxIntent, TxKind
from keeper.tx import ConfirmConfig, Confirmer, Lifecycle, Verdict
from keeper.tx.nonces import NonceManager
from keeper.tx.sender import Sender, SenderConfig

FAST = RetryPolicy(attempts=2, max_seconds=1.0, initial_wait=0.001, max_wait=0.002)
GWEI = 10**9


async def _v(x: Any) -> Any:
    return x


def bhash(n: int, fork: str = "a") -> str:
    return "0x" + (f"{fork}{n}".encode().hex()).rjust(64, "0")


def _hash_key(h: Any) -> str:
    return h.lower() if isinstance(h, str) else "0x" + bytes(h).hex()


class FakeEth:
    """A tiny chain: mempool, blocks of hashes, receipts."""

    def __init__(self) -> None:
        self.head = 10
        self.fork = {n: "a" for n in range(0, 200)}
        self.pool: dict[str, tuple[int, bytes]] = {}  # hash -> (nonce, raw)
        self.mined: dict[str, int] = {}  # hash -> block number
        self.mined_nonces: set[int] = set()
        self.base_fee = 10 * GWEI
        self.send_hook: Callable[[bytes], Any] | None = None
        self.call_hook: Callable[[], Any] | None = None
        self.sent: list[str] = []  # hashes accepted, in order
        self.hide_receipts = False
        self.reverting: set[str] = set()  # hashes whose receipt says status 0

    # helpers
    @staticmethod
    def decode(raw: bytes) -> tuple[str, int]:
        tx = TypedTransaction.from_bytes(HexBytes(raw))
        return "0x" + keccak(raw).hex(), int(tx.as_dict()["nonce"])

    def accept(self, raw: bytes) -> None:
        h, n = self.decode(raw)
        if h in self.pool:  # geth: a mined tx is no longer 'known' to the pool
            raise AlreadyKnown("already known")
        if n in self.mined_nonces:
            raise NonceTooLow("nonce too low")
        # replace same nonce
        for other, (on, _) in list(self.pool.items()):
            if on == n:
                del self.pool[other]
        self.pool[h] = (n, raw)
        self.sent.append(h)

    def mine(self, h: str | None = None) -> None:
        """Advance one block, mining ``h`` (or the lowest-nonce pool tx) if its nonce is next."""
        self.head += 1
        if h is None and self.pool:
            h = min(self.pool, key=lambda k: self.pool[k][0])
        if h is not None and h in self.pool:
            n, _ = self.pool.pop(h)
            if n == len(self.mined_nonces):
                self.mined[h] = self.head
                self.mined_nonces.add(n)
            else:
                self.pool[h] = (n, _)

    def ref(self, n: int, parent_fork: str | None = None) -> BlockRef:
        pf = parent_fork or self.fork.get(n - 1, "a")
        return BlockRef(n, bhash(n, self.fork.get(n, "a")), bhash(n - 1, pf), 1_000 + n)

    # web3 surface
    @property
    def chain_id(self) -> Any:
        return _v(31337)

    @property
    def block_number(self) -> Any:
        return _v(self.head)

    def fee_history(self, n: int, newest: Any, pct: list[float]) -> Any:
        return _v(
            {
                "baseFeePerGas": [self.base_fee] * (n + 1),
                "reward": [[2 * GWEI]] * n,
                "gasUsedRatio": [0.5] * n,
            }
        )

    def estimate_gas(self, call: Any) -> Any:
        return _v(100_000)

    def get_balance(self, addr: str, tag: Any) -> Any:
        return _v(10**21)

    def get_transaction_count(self, addr: str, tag: str) -> Any:
        mined = len(self.mined_nonces)
        if tag == "latest":
            return _v(mined)
        pend = mined
        nonces = {n for n, _ in self.pool.values()}
        while pend in nonces:
            pend += 1
        return _v(pend)

    async def send_raw_transaction(self, raw: bytes) -> Any:
        if self.send_hook is not None:
            return self.send_hook(raw)
        self.accept(raw)
        return keccak(raw)

    async def get_transaction_receipt(self, h: Any) -> Any:
        key = _hash_key(h)
        if key not in self.mined or self.hide_receipts:
            raise TransactionNotFound("none")
        n = self.mined[key]
        return {
            "blockNumber": n,
            "blockHash": bytes.fromhex(bhash(n, self.fork[n])[2:]),
            "status": 0 if key in self.reverting else 1,
            "gasUsed": 100_000,
            "effectiveGasPrice": 20 * GWEI,
        }

    async def get_transaction(self, h: Any) -> Any:
        key = _hash_key(h)
        if key in self.pool or key in self.mined:
            return {"hash": h}
        raise TransactionNotFound("none")

    async def get_block(self, n: int) -> Any:
        if n > self.head:
            raise BlockNotFound("none")
        return {"hash": bytes.fromhex(bhash(n, self.fork[n])[2:])}

    async def call(self, call: Any, block_identifier: Any = "latest") -> Any:
        assert self.call_hook is not None
        return self.call_hook()

    def forget(self, h: str | None) -> None:
        """The node drops a pending transaction (a restart, a mempool eviction)."""
        assert h is not None
        self.pool.pop(h, None)


class FakeW3:
    def __init__(self) -> None:
        self.eth = FakeEth()


async def wanted(entry: JournalEntry) -> Verdict:
    """A ``Redecide`` for which all journaled work is still wanted."""
    return Verdict.STILL_WANTED


async def stale(entry: JournalEntry) -> Verdict:
    return Verdict.STALE


async def unknown(entry: JournalEntry) -> Verdict:
    return Verdict.UNKNOWN


def build(
    tmp_path: Any,
    clock: Callable[[], float] | None = None,
    w3: FakeW3 | None = None,
    acct: Any = None,
    db: str = "k.db",
) -> tuple[Store, FakeW3, Any, Sender, Confirmer]:
    """One keeper's sending side on the fake chain (pass ``w3``/``acct`` to restart one)."""
    store = Store(f"sqlite:///{tmp_path}/{db}")
    w3 = w3 or FakeW3()
    acct = acct or Account.create()
    nm = NonceManager(w3, store, acct.address, policy=FAST)  # type: ignore[arg-type]
    sender = Sender(w3, acct, store, nm, SenderConfig(), policy=FAST)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    if clock is not None:
        kwargs["clock"] = clock
    conf = Confirmer(w3, sender, store, ConfirmConfig(stuck_after_blocks=3), policy=FAST, **kwargs)  # type: ignore[arg-type]
    return store, w3, acct, sender, conf


def lifecycle(
    tmp_path: Any, w3: FakeW3 | None = None, acct: Any = None
) -> tuple[Store, FakeW3, Any, Lifecycle]:
    store, w3, acct, sender, conf = build(tmp_path, w3=w3, acct=acct)
    return store, w3, acct, Lifecycle(sender, conf, store)


def intent(addr: str, *vaults: str, payload: dict[str, Any] | None = None) -> TxIntent:
    return TxIntent(
        kind=TxKind.REBALANCE,
        sender=addr,
        to="0x" + "12" * 20,
        data=b"\x01\x02",
        vaults=vaults,
        payload=payload or {},
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)
