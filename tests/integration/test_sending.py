"""The sending machinery on a real anvil: journal, nonces, fees, replacements, crashes, reorgs.

Transactions are plain value transfers from anvil's account 1 (the keeper's key); every
test starts its own anvil. A stuck transaction is made the way it happens on a busy chain:
the block gas limit fits one transfer and another account keeps outbidding the keeper.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from sending_support import (
    GWEI,
    KEEPER_KEY,
    OTHER_KEY,
    RECIPIENT_KEY,
    StoreBackend,
    account,
    anvil,
    connected,
    free_port,
    mine,
    postgres_unreachable,
    rpc,
    run,
    send_direct,
    web3,
)
from web3 import AsyncWeb3

from keeper.chain.blocks import block_ref
from keeper.chain.retry import RetryPolicy, guarded
from keeper.core.fees import FeePolicy, bump
from keeper.core.types import BlockRef
from keeper.errors import (
    AlreadyKnown,
    FatalError,
    InsufficientFunds,
    NonceTooLow,
    RetryableError,
    RpcError,
    RpcTimeout,
    SimulationReverted,
    Underpriced,
)
from keeper.store import JournalEntry, JournalState, Store, TxIntent, TxKind
from keeper.tx import (
    ConfirmConfig,
    Confirmer,
    Lifecycle,
    Redecide,
    Refusal,
    Refused,
    Submitted,
    Verdict,
)
from keeper.tx.nonces import NonceManager
from keeper.tx.sender import Broadcaster, ChainBroadcaster, GuardedRelay, Sender, SenderConfig

pytestmark = pytest.mark.integration

S = JournalState
KEEPER = account(KEEPER_KEY)
RECIPIENT = account(RECIPIENT_KEY).address
VAULT = "0x00000000000000000000000000000000000000aa"
FEES = FeePolicy(
    reward_percentile=50,
    priority_floor_wei=GWEI,
    priority_cap_wei=5 * GWEI,
    max_fee_cap_wei=100 * GWEI,
    emergency_max_fee_cap_wei=500 * GWEI,
)
FAST = RetryPolicy(attempts=3, max_seconds=5, initial_wait=0.01, max_wait=0.05)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    if request.param == "postgres" and (reason := postgres_unreachable()) is not None:
        pytest.skip(reason)
    made = StoreBackend.make(request.param, tmp_path)
    yield made
    made.drop()


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> StoreBackend:
    return StoreBackend.make("sqlite", tmp_path)


@dataclass
class Rig:
    """One keeper process's sending side, built on a store (a restart = a new rig)."""

    w3: AsyncWeb3[Any]
    store: Store
    nonces: NonceManager
    sender: Sender
    confirmer: Confirmer
    lifecycle: Lifecycle
    redecide: Redecide
    others: tuple[AsyncWeb3[Any], ...] = ()

    async def head(self) -> BlockRef:
        return block_ref(await self.w3.eth.get_block("latest"))

    async def on_head(self) -> Any:
        return await self.confirmer.on_block(await self.head(), self.redecide)

    async def reconcile(self) -> Any:
        return await self.confirmer.reconcile(self.redecide)

    async def prepare(self, intent: TxIntent) -> JournalEntry:
        """Journaled and signed, never broadcast (what a crash right after signing leaves)."""
        return await self.sender.prepare(intent, await self.sender.new_fees(intent))

    async def close(self) -> None:
        self.store.close()
        for w3 in (self.w3, *self.others):
            await w3.provider.disconnect()  # type: ignore[attr-defined]


@asynccontextmanager
async def rig(
    url: str,
    backend: StoreBackend,
    redecide: Redecide | None = None,
    private_url: str | None = None,
    stale_intent_seconds: float = 60.0,
    low_balance_wei: int = 0,
    private_route: Broadcaster | None = None,
) -> AsyncIterator[Rig]:
    """A rig on the node at ``url``, closed afterwards (also when the test fails)."""
    w3 = web3(url)
    store = Store(backend.url, schema=backend.schema)
    nonces = NonceManager(w3, store, KEEPER.address, FAST)
    others = (web3(private_url, 1.0),) if private_url else ()
    private = ChainBroadcaster(others[0], "private", FAST) if others else private_route
    sender = Sender(
        w3,
        KEEPER,
        store,
        nonces,
        SenderConfig(fees=FEES, low_balance_wei=low_balance_wei),
        private,
        FAST,
    )
    confirmer = Confirmer(
        w3,
        sender,
        store,
        ConfirmConfig(stuck_after_blocks=3, stale_intent_seconds=stale_intent_seconds),
        FAST,
    )
    lifecycle = Lifecycle(sender, confirmer, store)
    made = Rig(w3, store, nonces, sender, confirmer, lifecycle, redecide or wanted, others)
    try:
        yield made
    finally:
        await made.close()


@asynccontextmanager
async def rigged(backend: StoreBackend, **options: Any) -> AsyncIterator[Rig]:
    """A fresh anvil with one rig on it (``options`` as for ``rig``), both stopped afterwards."""
    with anvil() as node:
        async with rig(node.url, backend, **options) as keeper:
            yield keeper


async def wanted(entry: JournalEntry) -> Verdict:
    return Verdict.STILL_WANTED


async def stale(entry: JournalEntry) -> Verdict:
    return Verdict.STALE


async def unknown(entry: JournalEntry) -> Verdict:
    return Verdict.UNKNOWN


def transfer(value: int = 10**15, gas: int | None = None, vault: str = VAULT) -> TxIntent:
    return TxIntent(
        kind=TxKind.REBALANCE,
        sender=KEEPER.address,
        to=RECIPIENT,
        value_wei=value,
        gas_limit=gas,
        vaults=(vault,),
        payload={"decision_block": 0},
    )


async def keeper_txs_on_chain(w3: AsyncWeb3[Any]) -> list[str]:
    """Hashes of every transaction from the keeper's address in the chain, in order."""
    found = []
    for number in range(await w3.eth.block_number + 1):
        block = await w3.eth.get_block(number, full_transactions=True)
        found += [
            "0x" + bytes(t["hash"]).hex()
            for t in block["transactions"]
            if t["from"] == KEEPER.address
        ]
    return found


# --- the normal path ---------------------------------------------------------------------------


def test_send_and_confirm(sqlite_backend: StoreBackend) -> None:
    async def scenario() -> None:
        async with rigged(sqlite_backend) as keeper:
            before = await keeper.w3.eth.get_balance(RECIPIENT)
            entry = await keeper.sender.submit(transfer(value=12345))
            assert entry.state is S.SENT and entry.nonce == 0 and entry.gas_limit is not None
            assert keeper.store.vault_in_flight(VAULT)
            report = await keeper.on_head()
            assert report.mined == (entry.id,)
            mined = keeper.store.entry(entry.id)
            receipt = await keeper.w3.eth.get_transaction_receipt(mined.tx_hash)  # type: ignore[arg-type]
            assert mined.state is S.MINED and receipt["status"] == 1
            assert mined.mined_block_hash == "0x" + bytes(receipt["blockHash"]).hex()
            assert await keeper.w3.eth.get_balance(RECIPIENT) == before + 12345
            assert not keeper.store.vault_in_flight(VAULT)
            second = await keeper.sender.submit(transfer(value=1))
            assert second.nonce == 1 and keeper.store.next_nonce(KEEPER.address) == 2

    run(scenario())


def test_private_route_falls_back_to_the_public_node(sqlite_backend: StoreBackend) -> None:
    async def scenario() -> None:
        with anvil() as node:
            dead_relay = f"http://127.0.0.1:{free_port()}"  # nothing listens there
            async with rig(node.url, sqlite_backend, private_url=dead_relay) as keeper:
                entry = await keeper.sender.submit(transfer())
                assert (await keeper.on_head()).mined == (entry.id,)

    run(scenario())


def test_private_route_is_used_when_it_answers(sqlite_backend: StoreBackend) -> None:
    async def scenario() -> None:
        with anvil() as public, anvil() as relay:
            async with rig(public.url, sqlite_backend, private_url=relay.url) as keeper:
                entry = await keeper.sender.submit(transfer())
                async with connected(relay.url) as relay_w3:
                    # the relay (a separate chain here) got the bytes; the public node did not
                    assert await relay_w3.eth.get_transaction_count(KEEPER.address) == 1
                    assert await keeper.w3.eth.get_transaction_count(KEEPER.address) == 0
                    assert entry.state is S.SENT

    run(scenario())


class ReachesTheNodeThenTimesOut:
    """A private route whose send reaches the node but whose answer is lost."""

    name = "private"

    def __init__(self, url: str) -> None:
        self.url = url

    async def send_raw(self, raw: bytes) -> None:
        async with connected(self.url) as w3:
            await w3.eth.send_raw_transaction(raw)
        raise RpcTimeout("eth_sendRawTransaction (private): no answer")


def test_our_own_bytes_using_the_nonce_count_as_sent_not_a_reason_to_sign_again(
    sqlite_backend: StoreBackend,
) -> None:
    async def scenario() -> None:
        with anvil() as node:
            lossy = ReachesTheNodeThenTimesOut(node.url)
            async with rig(node.url, sqlite_backend, private_route=lossy) as keeper:
                # automine: the private send is mined at once, and the public fallback then
                # hears "nonce too low" for the very same bytes
                entry = await keeper.sender.submit(transfer())
                assert entry.state is S.SENT and entry.nonce == 0
                assert keeper.store.entries_in([S.DROPPED, S.FAILED]) == []
                assert await keeper_txs_on_chain(keeper.w3) == [entry.tx_hash]  # sent once
                assert (await keeper.on_head()).mined == (entry.id,)
                assert (await keeper.sender.submit(transfer())).nonce == 1

    run(scenario())


def test_fees_above_the_cap_make_non_urgent_work_wait(sqlite_backend: StoreBackend) -> None:
    async def scenario() -> None:
        async with rigged(sqlite_backend) as keeper:
            await rpc(keeper.w3, "anvil_setNextBlockBaseFeePerGas", hex(200 * GWEI))
            await mine(keeper.w3)  # the next base fee is now ~175 gwei, above the 100 cap
            await keeper.lifecycle.start(wanted)
            waited = await keeper.lifecycle.submit(transfer())
            assert isinstance(waited, Refused) and waited.reason is Refusal.FEES
            assert "above the cap" in waited.detail
            assert keeper.store.entries_in(list(S)) == []  # item 15: no failed row per block
            assert not keeper.store.vault_in_flight(VAULT)
            urgent = TxIntent(**{**transfer().__dict__, "urgent": True})
            outcome = await keeper.lifecycle.submit(urgent)
            assert isinstance(outcome, Submitted)
            entry = outcome.entry
            assert entry.nonce == 0 and entry.max_fee_wei is not None
            assert 175 * GWEI < entry.max_fee_wei <= 500 * GWEI
            assert (await keeper.on_head()).mined == (entry.id,)

    run(scenario())


def test_a_reverting_call_is_refused_before_anything_is_journaled(
    sqlite_backend: StoreBackend,
) -> None:
    async def scenario() -> None:
        async with rigged(sqlite_backend) as keeper:
            target = await deploy_reverter(keeper.w3, error_string("vault paused"))
            intent = TxIntent(
                kind=TxKind.REBALANCE,
                sender=KEEPER.address,
                to=target,
                data=b"\x12\x34",
                vaults=(VAULT,),
            )
            with pytest.raises(SimulationReverted) as caught:
                await keeper.sender.submit(intent)
            assert caught.value.reason == "vault paused"
            assert keeper.store.entries_in(list(S)) == []  # nothing journaled, no vault held
            assert not keeper.store.vaults_in_flight()
            assert (await keeper.sender.submit(transfer())).nonce == 1  # 0 went to the deploy

    run(scenario())


# --- stuck transactions --------------------------------------------------------------------------


async def crowd_out(w3: AsyncWeb3[Any], blocks: int) -> None:
    """Blocks that fit one transfer, and ``blocks`` transfers from another account that
    outbid the keeper, so a keeper transaction stays pending that long."""
    await rpc(w3, "evm_setAutomine", False)
    await rpc(w3, "evm_setBlockGasLimit", hex(21_000))
    for nonce in range(blocks):
        await send_direct(w3, OTHER_KEY, nonce, RECIPIENT, 1, 100 * GWEI, 50 * GWEI)


@pytest.mark.parametrize("winner", ["replacement", "original"])
def test_a_stuck_transaction_is_replaced_and_exactly_one_lands(
    sqlite_backend: StoreBackend, winner: str
) -> None:
    async def scenario() -> None:
        async with rigged(sqlite_backend) as keeper:
            await crowd_out(keeper.w3, 3)
            old = await keeper.sender.submit(transfer(gas=21_000))
            for _ in range(2):
                await mine(keeper.w3)
                report = await keeper.on_head()
                assert report.replaced_by == () and report.mined == ()
            await mine(keeper.w3)  # the third block without it: stuck
            report = await keeper.on_head()
            [new_id] = report.replaced_by
            new, old = keeper.store.entry(new_id), keeper.store.entry(old.id)
            assert old.state is S.REPLACED and old.replaced_by_id == new.id
            assert new.state is S.SENT and new.nonce == old.nonce and new.tx_hash != old.tx_hash
            assert new.max_fee_wei >= bump(old.max_fee_wei)  # type: ignore[operator]
            assert new.priority_fee_wei >= bump(old.priority_fee_wei)  # type: ignore[operator]
            if winner == "original":  # the old bytes reach a block first after all
                await rpc(keeper.w3, "anvil_dropTransaction", new.tx_hash)
                await keeper.w3.eth.send_raw_transaction(old.raw_tx)  # type: ignore[arg-type]
            await mine(keeper.w3)
            report = await keeper.on_head()
            landed = new if winner == "replacement" else old
            assert report.mined == (landed.id,)
            group = {e.id: e.state for e in keeper.store.entries_for_nonce(KEEPER.address, 0)}
            expected = (
                {old.id: S.REPLACED, new.id: S.MINED}
                if winner == "replacement"
                else {old.id: S.MINED, new.id: S.DROPPED}
            )
            assert group == expected
            assert await keeper_txs_on_chain(keeper.w3) == [landed.tx_hash]
            assert not keeper.store.vault_in_flight(VAULT)

    run(scenario())


def test_work_no_longer_needed_is_cancelled(sqlite_backend: StoreBackend) -> None:
    async def scenario() -> None:
        async with rigged(sqlite_backend, redecide=stale) as keeper:
            before = await keeper.w3.eth.get_balance(RECIPIENT)
            await crowd_out(keeper.w3, 3)
            old = await keeper.sender.submit(transfer(value=10**18, gas=21_000))
            await mine(keeper.w3, 3)
            [cancel_id] = (await keeper.on_head()).cancelled_by
            cancel = keeper.store.entry(cancel_id)
            assert cancel.kind is TxKind.CANCEL and cancel.to == KEEPER.address
            assert cancel.value_wei == 0 and cancel.nonce == old.nonce
            assert keeper.store.entry(old.id).state is S.CANCELLED
            await mine(keeper.w3)
            assert (await keeper.on_head()).mined == (cancel_id,)
            tx = await keeper.w3.eth.get_transaction(cancel.tx_hash)  # type: ignore[arg-type]
            assert tx["to"] == KEEPER.address and tx["value"] == 0
            # the stale transfer never executed: only the other account's 1-wei transfers did
            assert await keeper.w3.eth.get_balance(RECIPIENT) == before + 3

    run(scenario())


def test_a_stuck_transaction_is_left_alone_while_its_need_is_unknown(
    sqlite_backend: StoreBackend,
) -> None:
    verdicts = [Verdict.UNKNOWN, Verdict.STILL_WANTED]  # undecided (just restarted), then needed

    async def judge(entry: Any) -> Verdict:
        return verdicts.pop(0)

    async def scenario() -> None:
        async with rigged(sqlite_backend, redecide=judge) as keeper:
            await crowd_out(keeper.w3, 4)
            old = await keeper.sender.submit(transfer(gas=21_000))
            await mine(keeper.w3, 3)
            report = await keeper.on_head()  # stuck, but whether it is needed is unknown
            assert report.replaced_by == () and report.cancelled_by == ()
            assert keeper.store.entry(old.id).state is S.SENT
            await mine(keeper.w3)
            [new_id] = (await keeper.on_head()).replaced_by  # known now: replaced, not cancelled
            assert keeper.store.entry(new_id).kind is TxKind.REBALANCE
            assert keeper.store.entry(old.id).state is S.REPLACED

    run(scenario())


def test_an_account_that_cannot_pay_is_refused_before_a_nonce_is_used(
    sqlite_backend: StoreBackend, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with rigged(sqlite_backend, low_balance_wei=10**18) as keeper:
            await rpc(keeper.w3, "anvil_setBalance", KEEPER.address, hex(10**12))
            with pytest.raises(InsufficientFunds, match="fund the account"):
                await keeper.sender.submit(transfer())
            assert keeper.store.entries_in(list(S)) == []  # nothing journaled, no nonce taken
            assert await keeper.w3.eth.get_transaction_count(KEEPER.address) == 0
            # 0.1 ETH pays for it, but leaves less than the 1 ETH the operator wants kept
            await rpc(keeper.w3, "anvil_setBalance", KEEPER.address, hex(10**17))
            with caplog.at_level("WARNING", logger="keeper.sender"):
                entry = await keeper.sender.submit(transfer())
            assert entry.nonce == 0 and entry.state is S.SENT
            assert "keeper account balance low" in caplog.text
            assert (await keeper.on_head()).mined == (entry.id,)

    run(scenario())


# --- the key used outside the keeper -----------------------------------------------------------


def test_nonce_used_outside_the_keeper_is_recovered_on_send(sqlite_backend: StoreBackend) -> None:
    async def scenario() -> None:
        async with rigged(sqlite_backend) as keeper:
            first = await keeper.sender.submit(transfer())
            await keeper.on_head()
            # another process sends with the same key: nonce 1 is used behind our back
            await send_direct(keeper.w3, KEEPER_KEY, 1, RECIPIENT, 1, 10 * GWEI, GWEI)
            assert keeper.store.next_nonce(KEEPER.address) == 1
            entry = await keeper.sender.submit(transfer())  # tries 1, resyncs, sends with 2
            assert entry.nonce == 2 and entry.state is S.SENT
            [dropped] = keeper.store.entries_in([S.DROPPED])
            assert dropped.nonce == 1 and "nonce" in (dropped.error or "")
            assert (await keeper.on_head()).mined == (entry.id,)
            assert await keeper.w3.eth.get_transaction_count(KEEPER.address) == 3
            assert keeper.store.next_nonce(KEEPER.address) == 3
            assert keeper.store.free_nonces(KEEPER.address) == []
            assert first.id != entry.id

    run(scenario())


def test_nonce_used_outside_the_keeper_is_noticed_each_block(sqlite_backend: StoreBackend) -> None:
    async def scenario() -> None:
        async with rigged(sqlite_backend) as keeper:
            await keeper.sender.submit(transfer())
            await keeper.on_head()
            for nonce in (1, 2):
                await send_direct(keeper.w3, KEEPER_KEY, nonce, RECIPIENT, 1, 10 * GWEI, GWEI)
            await keeper.on_head()  # notices the chain is ahead and resyncs
            assert keeper.store.next_nonce(KEEPER.address) == 3
            entry = await keeper.sender.submit(transfer())
            assert entry.nonce == 3
            assert keeper.store.entries_in([S.DROPPED, S.FAILED]) == []  # no conflict at all

    run(scenario())


def test_an_outside_transaction_taking_a_pending_nonce_drops_our_entry(
    sqlite_backend: StoreBackend,
) -> None:
    async def scenario() -> None:
        async with rigged(sqlite_backend) as keeper:
            await rpc(keeper.w3, "evm_setAutomine", False)
            ours = await keeper.sender.submit(transfer())
            # the other process outbids us at the same nonce and wins the block
            await send_direct(keeper.w3, KEEPER_KEY, 0, RECIPIENT, 7, 50 * GWEI, 5 * GWEI)
            await mine(keeper.w3)
            report = await keeper.on_head()
            assert report.dropped == (ours.id,)
            assert keeper.store.entry(ours.id).state is S.DROPPED
            assert not keeper.store.vault_in_flight(VAULT)
            assert keeper.store.next_nonce(KEEPER.address) == 1

    run(scenario())


# --- crashes -----------------------------------------------------------------------------------


def test_crash_before_signing_gives_the_nonce_back(backend: StoreBackend) -> None:
    async def scenario() -> None:
        with anvil() as node:
            async with rig(node.url, backend) as crashed:
                entry = crashed.store.create_intent(transfer())
                await crashed.nonces.claim(entry.id)  # ... and the process dies here
            async with rig(node.url, backend) as keeper:  # item 13: at once, not after 30 s
                report = await keeper.reconcile()
                assert report.failed == (entry.id,)
                assert keeper.store.entry(entry.id).state is S.FAILED
                again = await keeper.sender.submit(transfer())
                assert again.nonce == 0

    run(scenario())


def test_crash_after_signing_before_broadcast(backend: StoreBackend) -> None:
    async def scenario() -> None:
        with anvil() as node:
            async with rig(node.url, backend) as crashed:
                signed = await crashed.prepare(transfer())  # journaled, never broadcast
            async with rig(node.url, backend) as keeper:
                report = await keeper.reconcile()
                assert report.rebroadcast == (signed.id,)
                assert keeper.store.entry(signed.id).state is S.SENT
                assert (await keeper.on_head()).mined == (signed.id,)
                assert await keeper_txs_on_chain(keeper.w3) == [signed.tx_hash]  # the same bytes
                again = await keeper.reconcile()
                assert again.rebroadcast == () and again.mined == ()
                assert await keeper.w3.eth.get_transaction_count(KEEPER.address) == 1

    run(scenario())


def test_crash_after_broadcast_before_it_was_journaled(backend: StoreBackend) -> None:
    async def scenario() -> None:
        with anvil() as node:
            async with rig(node.url, backend) as crashed:
                signed = await crashed.prepare(transfer())
                await crashed.w3.eth.send_raw_transaction(signed.raw_tx)  # type: ignore[arg-type]
            # the process died before journaling "sent"; the tx is mined meanwhile
            async with rig(node.url, backend) as keeper:
                report = await keeper.reconcile()
                assert report.mined == (signed.id,) and report.rebroadcast == ()
                assert keeper.store.entry(signed.id).state is S.MINED
                assert await keeper_txs_on_chain(keeper.w3) == [signed.tx_hash]
                assert keeper.store.next_nonce(KEEPER.address) == 1

    run(scenario())


@pytest.mark.parametrize("node_forgot_it", [False, True])
def test_crash_after_broadcast_before_the_receipt(
    backend: StoreBackend, node_forgot_it: bool
) -> None:
    async def scenario() -> None:
        with anvil() as node:
            async with rig(node.url, backend) as crashed:
                await rpc(crashed.w3, "evm_setAutomine", False)
                sent = await crashed.sender.submit(transfer())
            async with rig(node.url, backend) as keeper:
                if node_forgot_it:
                    await rpc(keeper.w3, "anvil_dropTransaction", sent.tx_hash)
                report = await keeper.reconcile()
                assert report.rebroadcast == ((sent.id,) if node_forgot_it else ())
                assert keeper.store.entry(sent.id).state is S.SENT
                await mine(keeper.w3)
                assert (await keeper.on_head()).mined == (sent.id,)
                assert await keeper_txs_on_chain(keeper.w3) == [sent.tx_hash]

    run(scenario())


# --- reorgs ------------------------------------------------------------------------------------


def test_a_reorg_puts_the_mined_transaction_back_and_resends_it(
    sqlite_backend: StoreBackend,
) -> None:
    async def scenario() -> None:
        async with rigged(sqlite_backend) as keeper:
            await rpc(keeper.w3, "evm_setAutomine", False)
            await mine(keeper.w3)
            entry = await keeper.sender.submit(transfer())
            snapshot = await rpc(keeper.w3, "evm_snapshot")
            await mine(keeper.w3)
            first = await keeper.head()
            assert (await keeper.on_head()).mined == (entry.id,)
            assert keeper.store.entry(entry.id).mined_block_hash == first.hash
            assert not keeper.store.vault_in_flight(VAULT)

            await rpc(keeper.w3, "evm_revert", snapshot)  # the block is gone ...
            await mine(keeper.w3)  # ... and another block takes its height
            fork = await keeper.head()
            assert fork.number == first.number and fork.hash != first.hash
            report = await keeper.confirmer.on_block(fork, wanted)
            assert report.reorged == (entry.id,) and report.rebroadcast == (entry.id,)
            assert keeper.store.entry(entry.id).state is S.SENT
            assert keeper.store.vault_in_flight(VAULT)

            await mine(keeper.w3)
            assert (await keeper.on_head()).mined == (entry.id,)
            again = keeper.store.entry(entry.id)
            assert again.mined_block_number == first.number + 1
            assert await keeper_txs_on_chain(keeper.w3) == [entry.tx_hash]

    run(scenario())


# --- helpers: a contract that always reverts with the given data ----------------------------------


def error_string(reason: str) -> bytes:
    from eth_abi.abi import encode

    return bytes.fromhex("08c379a0") + encode(["string"], [reason])


async def deploy_reverter(w3: AsyncWeb3[Any], revert_data: bytes) -> str:
    """Deploy (from the keeper's key) code that reverts with ``revert_data``."""
    size = len(revert_data)
    if size > 255:
        raise ValueError("revert data too long for this tiny contract")
    # runtime: CODECOPY(0, 12, size); REVERT(0, size); then the data at offset 12
    runtime = bytes([0x60, size, 0x60, 12, 0x60, 0, 0x39, 0x60, size, 0x60, 0, 0xFD]) + revert_data
    # init: CODECOPY(0, 12, len(runtime)); RETURN(0, len(runtime)); then the runtime
    n = len(runtime)
    init = bytes([0x60, n, 0x60, 12, 0x60, 0, 0x39, 0x60, n, 0x60, 0, 0xF3]) + runtime
    signed = KEEPER.sign_transaction(
        {
            "type": 2,
            "chainId": await w3.eth.chain_id,
            "nonce": await w3.eth.get_transaction_count(KEEPER.address, "pending"),
            "value": 0,
            "data": init,
            "gas": 200_000,
            "maxFeePerGas": 10 * GWEI,
            "maxPriorityFeePerGas": GWEI,
        }
    )
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    return str(receipt["contractAddress"])


# --- the error map against real node answers ------------------------------------------------------


async def _signed_transfer(
    w3: AsyncWeb3[Any], nonce: int, value: int, max_fee: int, tip: int, key: str = KEEPER_KEY
) -> bytes:
    signed = account(key).sign_transaction(
        {
            "type": 2,
            "chainId": await w3.eth.chain_id,
            "nonce": nonce,
            "to": RECIPIENT,
            "value": value,
            "gas": 21_000,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        }
    )
    return bytes(signed.raw_transaction)


def test_anvil_send_errors_map_to_the_error_tree() -> None:
    async def scenario() -> None:
        with anvil() as node:
            async with connected(node.url) as w3:

                async def send(raw: bytes) -> None:
                    await guarded(lambda: w3.eth.send_raw_transaction(raw))

                await rpc(w3, "evm_setAutomine", False)
                first = await _signed_transfer(w3, 0, 1, 3 * GWEI, GWEI)
                await send(first)
                with pytest.raises(AlreadyKnown):
                    await send(first)
                with pytest.raises(Underpriced):
                    await send(await _signed_transfer(w3, 0, 2, 3 * GWEI - 1, GWEI - 1))
                await mine(w3)
                with pytest.raises(NonceTooLow):
                    await send(await _signed_transfer(w3, 0, 3, 10 * GWEI, 2 * GWEI))
                broke = Account.create().key.hex()
                with pytest.raises(FatalError) as refused:
                    await send(await _signed_transfer(w3, 0, 1, 3 * GWEI, GWEI, key=broke))
                assert not isinstance(refused.value, RetryableError)
                assert "insufficient funds" in str(refused.value).lower()

    run(scenario())


@pytest.mark.parametrize(
    ("revert_data", "reason"),
    [
        (error_string("not a keeper"), "not a keeper"),
        (bytes.fromhex("4e487b71") + (0x12).to_bytes(32, "big"), "Panic(0x12)"),
        (
            bytes.fromhex("1a2b3c4d") + (5).to_bytes(32, "big"),
            "custom error 0x1a2b3c4d with data 0x" + "00" * 31 + "05",
        ),
        (bytes.fromhex("1a2b3c4d"), "custom error 0x1a2b3c4d"),
    ],
    ids=["error-string", "panic", "custom-error-with-args", "custom-error-bare"],
)
def test_anvil_reverts_are_decoded(revert_data: bytes, reason: str) -> None:
    async def scenario() -> None:
        with anvil() as node:
            async with connected(node.url) as w3:
                target = await deploy_reverter(w3, revert_data)
                call = {"from": KEEPER.address, "to": target, "data": b"\x01"}
                with pytest.raises(SimulationReverted) as estimated:
                    await guarded(lambda: w3.eth.estimate_gas(call))  # type: ignore[arg-type]
                with pytest.raises(SimulationReverted) as called:
                    await guarded(lambda: w3.eth.call(call))  # type: ignore[arg-type]
                for caught in (estimated, called):
                    assert caught.value.reason == reason and caught.value.data == revert_data

    run(scenario())


def test_unreachable_and_silent_nodes_are_retried_rpc_errors() -> None:
    async def scenario() -> None:
        calls = 0
        async with connected(f"http://127.0.0.1:{free_port()}") as dead:

            async def block_number() -> int:
                nonlocal calls
                calls += 1
                return await dead.eth.block_number

            with pytest.raises(RpcError):
                await FAST.call(block_number)
            assert calls == FAST.attempts

        with socket.socket() as listener:  # accepts connections, never answers
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            silent_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            async with connected(silent_url, timeout=0.2) as silent:
                with pytest.raises(RpcTimeout):
                    await RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02).call(
                        lambda: silent.eth.block_number
                    )

    run(scenario())


# --- issue 10: the lifecycle's regressions on a real node ---------------------------------------


async def started(keeper: Rig, redecide: Redecide = wanted) -> None:
    await keeper.lifecycle.start(redecide)


async def submit(keeper: Rig, intent: TxIntent) -> JournalEntry:
    outcome = await keeper.lifecycle.submit(intent)
    assert isinstance(outcome, Submitted), outcome
    return outcome.entry


async def on_block(keeper: Rig, redecide: Redecide, **kw: Any) -> Any:
    return await keeper.lifecycle.on_block(await keeper.head(), redecide, **kw)


def test_a_forgotten_batch_whose_price_came_back_is_cancelled_at_restart_not_resent(
    backend: StoreBackend,
) -> None:
    """Item 1: killed with a transaction pending, the node forgets it, the state it was
    computed from is gone: the restart sends nothing until re-decided, then cancels it."""

    async def scenario() -> None:
        with anvil() as node:
            async with rig(node.url, backend) as crashed:
                await rpc(crashed.w3, "evm_setAutomine", False)
                await started(crashed)
                before = await crashed.w3.eth.get_balance(RECIPIENT)
                sent = await submit(crashed, transfer(value=10**18))
            async with rig(node.url, backend) as keeper:  # the restart
                await rpc(keeper.w3, "anvil_dropTransaction", sent.tx_hash)
                report = await keeper.lifecycle.start(unknown)  # nothing decided yet
                assert report.rebroadcast == () and report.waiting_for_decision == (sent.id,)
                await mine(keeper.w3)
                report = await on_block(keeper, stale)
                [cancel_id] = report.cancelled_by
                await mine(keeper.w3)
                assert (await on_block(keeper, wanted)).mined == (cancel_id,)
                assert keeper.store.entry(sent.id).state is S.CANCELLED
                assert await keeper.w3.eth.get_balance(RECIPIENT) == before  # never executed
                assert await keeper_txs_on_chain(keeper.w3) == [
                    keeper.store.entry(cancel_id).tx_hash
                ]

    run(scenario())


def test_an_orphaned_transaction_whose_state_the_reorg_removed_is_cancelled(
    sqlite_backend: StoreBackend,
) -> None:
    """Item 2: the reorg took the block of a mined transaction away (and with it the state
    it was computed from): it is re-decided, not re-broadcast, and cancelled on its nonce."""

    async def scenario() -> None:
        async with rigged(sqlite_backend) as keeper:
            await rpc(keeper.w3, "evm_setAutomine", False)
            await started(keeper)
            await mine(keeper.w3)
            before = await keeper.w3.eth.get_balance(RECIPIENT)
            snapshot = await rpc(keeper.w3, "evm_snapshot")
            entry = await submit(keeper, transfer(value=10**18))
            await mine(keeper.w3)
            assert (await on_block(keeper, wanted)).mined == (entry.id,)
            await rpc(keeper.w3, "evm_revert", snapshot)  # the block is gone ...
            await mine(keeper.w3)  # ... and another takes its height
            report = await on_block(keeper, stale)
            assert report.reorged == (entry.id,) and report.rebroadcast == ()
            [cancel_id] = report.cancelled_by
            await mine(keeper.w3)
            assert (await on_block(keeper, wanted)).mined == (cancel_id,)
            assert await keeper.w3.eth.get_balance(RECIPIENT) == before
            assert not keeper.store.vault_in_flight(VAULT)

    run(scenario())


class RefusesOnce:
    """A route that refuses the first transaction it sees as underpriced, then relays."""

    name = "private"

    def __init__(self, inner: Broadcaster, nonce_of: Any) -> None:
        self.inner, self.refused = inner, 0

    async def send_raw(self, raw: bytes) -> None:
        if self.refused == 0:
            self.refused += 1
            raise Underpriced("replacement transaction underpriced")
        await self.inner.send_raw(raw)


def test_a_refused_replacement_is_an_outcome_not_a_crash_loop(
    backend: StoreBackend,
) -> None:
    """Item 3: the node refuses one replacement; the next block's attempt is new bytes above
    it, journaled without hitting UNIQUE tx_hash, and exactly one transaction lands."""

    async def scenario() -> None:
        with anvil() as node:
            async with rig(node.url, backend) as keeper:
                await started(keeper)
                await crowd_out(keeper.w3, 5)
                old = await submit(keeper, transfer(gas=21_000))
                route = RefusesOnce(ChainBroadcaster(keeper.w3, "public", FAST), None)
                keeper.sender._routes = (route,)
                await mine(keeper.w3, 3)
                report = await on_block(keeper, wanted)  # stuck: replaced, refused
                assert report.replaced_by == () and route.refused == 1
                [refused] = keeper.store.entries_in([S.FAILED])
                await mine(keeper.w3)
                [new_id] = (await on_block(keeper, wanted)).replaced_by  # no exception
                group = keeper.store.entries_for_nonce(KEEPER.address, old.nonce or 0)
                assert len({e.tx_hash for e in group}) == 3
                new = keeper.store.entry(new_id)
                assert (new.max_fee_wei or 0) > (refused.max_fee_wei or 0)
                await rpc(keeper.w3, "evm_setBlockGasLimit", hex(30_000_000))
                await mine(keeper.w3, 3)
                assert (await on_block(keeper, wanted)).mined == (new_id,)
                assert [h for h in await keeper_txs_on_chain(keeper.w3)] == [new.tx_hash]

    run(scenario())


def test_two_instances_on_one_database_never_crash_each_other(
    backend: StoreBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 9: the other instance's in-flight work is INFO, not ERROR, and both follow the
    same journal to the receipt without a conflict escaping."""

    async def scenario() -> None:
        with anvil() as node:
            async with rig(node.url, backend) as one, rig(node.url, backend) as two:
                await rpc(one.w3, "evm_setAutomine", False)
                await started(one)
                await started(two)
                entry = await submit(one, transfer())
                with caplog.at_level(logging.INFO):
                    refused = await two.lifecycle.submit(transfer())
                    await mine(one.w3)
                    reports = [await on_block(two, wanted), await on_block(one, wanted)]
                assert isinstance(refused, Refused) and refused.reason is Refusal.IN_FLIGHT
                assert [r.mined for r in reports] == [(entry.id,), ()]
                assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
                assert await keeper_txs_on_chain(one.w3) == [entry.tx_hash]

    run(scenario())


def test_a_whole_transaction_revert_is_an_error_with_its_reason_and_backs_the_vault_off(
    sqlite_backend: StoreBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 10: ERROR with the decoded reason, a counter, and the same work is not resent
    every block (per-vault backoff)."""

    async def scenario() -> None:
        async with rigged(sqlite_backend) as keeper:
            target = await deploy_reverter(keeper.w3, error_string("deadline expired"))
            await started(keeper)
            doomed = TxIntent(
                kind=TxKind.REBALANCE,
                sender=KEEPER.address,
                to=target,
                data=b"\x12\x34",
                gas_limit=100_000,  # no estimate: it goes on chain and reverts there
                vaults=(VAULT,),
            )
            entry = await submit(keeper, doomed)
            with caplog.at_level(logging.ERROR):
                report = await on_block(keeper, wanted)
            assert report.reverted == ((entry.id, "deadline expired"),)
            assert keeper.store.entry(entry.id).receipt_status == 0
            [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert error.fields["reason"] == "deadline expired"  # type: ignore[attr-defined]
            assert keeper.lifecycle.reverts_total == 1
            again = await keeper.lifecycle.submit(doomed)
            assert isinstance(again, Refused) and again.reason is Refusal.BACKOFF
            assert VAULT in keeper.lifecycle.in_flight_vaults()

    run(scenario())


class Blackhole:
    """A TCP port that accepts connections and never answers (a dead relay)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


class Counting:
    def __init__(self, inner: Broadcaster) -> None:
        self.inner, self.name, self.calls = inner, inner.name, 0

    async def send_raw(self, raw: bytes) -> None:
        self.calls += 1
        await self.inner.send_raw(raw)


def test_a_dead_private_relay_is_skipped_after_one_short_timeout(
    sqlite_backend: StoreBackend,
) -> None:
    """Item 11: the relay gets one short timeout, then the circuit is open and sends go to
    the public node at once; a transaction counts its blocks from its broadcast."""
    hole = Blackhole()

    async def scenario() -> None:
        with anvil() as node:
            relay_w3 = web3(hole.url, timeout=30)  # the relay's own timeout would be long
            dead = Counting(ChainBroadcaster(relay_w3, "private", FAST))
            breaker = GuardedRelay(dead, timeout_seconds=0.3, cooldown_seconds=3600)
            async with rig(node.url, sqlite_backend, private_route=breaker) as keeper:
                await rpc(keeper.w3, "evm_setAutomine", False)
                await started(keeper)
                first = await submit(keeper, transfer(vault="0x" + "01" * 20))
                second = await submit(keeper, transfer(vault="0x" + "02" * 20))
                assert dead.calls == 1 and breaker.trips == 1 and breaker.is_open()
                assert first.sent_at_block == second.sent_at_block == (await keeper.head()).number
                await mine(keeper.w3)
                assert set((await on_block(keeper, wanted)).mined) == {first.id, second.id}
            await relay_w3.provider.disconnect()  # type: ignore[attr-defined]

    try:
        run(scenario())
    finally:
        hole.close()
