"""The JSON-RPC transport against a real anvil, directly and through proxies that fail."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
from anvil_proxy import Proxy, anvil, rpc

from keeper.chain.retry import RetryPolicy
from keeper.chain.rpc import RpcClient, RpcConfig
from keeper.errors import NonceTooLow

FAST = RetryPolicy(attempts=4, max_seconds=10, initial_wait=0.01, max_wait=0.05)
# anvil's default mnemonic, account 0 (local test key only).
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


@pytest.fixture(scope="module")
def node() -> Iterator[str]:
    with anvil("--no-mining") as url:  # blocks only when a test mines one
        yield url


def test_thousands_of_cancelled_requests_never_wedge_a_later_read(node: str) -> None:
    """Cancel 3,000 requests at random points (before sending, while connecting, while the
    node answers) on a client with only 4 sockets: a socket or pool slot leaked by a
    cancellation would wedge the reads that follow."""

    async def go() -> tuple[int, list[int], int]:
        client = RpcClient(RpcConfig(urls=(node,), max_connections=4, policy=FAST))
        try:
            tasks = [
                asyncio.create_task(client.call("eth_getBlockByNumber", ["latest", True]))
                for _ in range(3_000)
            ]
            rng = random.Random(7)
            for task in tasks:
                if rng.random() < 0.3:
                    await asyncio.sleep(0)
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            cancelled = sum(isinstance(o, asyncio.CancelledError) for o in outcomes)
            reads = await asyncio.wait_for(
                asyncio.gather(*(client.call("eth_blockNumber", []) for _ in range(50))), 60
            )
            return cancelled, [int(r, 16) for r in reads], await client.chain_id()
        finally:
            await client.close()

    cancelled, reads, chain_id = asyncio.run(go())
    assert cancelled > 2_000
    assert len(reads) == 50 and len(set(reads)) == 1
    assert chain_id == 31337


def test_concurrent_requests_are_answered_in_parallel_with_their_own_answers(node: str) -> None:
    """Many different reads at once: each caller gets the answer to its own request."""

    async def go() -> list[tuple[int, int]]:
        client = RpcClient(RpcConfig(urls=(node,), policy=FAST))
        try:
            for _ in range(5):
                await client.call("evm_mine", [], block_sensitive=False)
            blocks = await asyncio.gather(
                *(client.call("eth_getBlockByNumber", [hex(n % 6), False]) for n in range(300))
            )
            return [(n % 6, int(b["number"], 16)) for n, b in enumerate(blocks)]
        finally:
            await client.close()

    pairs = asyncio.run(go())
    assert all(asked == got for asked, got in pairs)


def test_reads_fail_over_when_one_endpoint_dies_one_lags_and_one_errs(node: str) -> None:
    """Four proxies in front of one anvil: one killed, one 10 blocks behind, one answering
    503 then JSON-RPC 'limit exceeded'; reads pinned to the newest block and at 'latest'
    keep working through the good one, and the failing ones come back when they recover."""

    async def go() -> dict[str, Any]:
        proxies = [Proxy(node) for _ in range(4)]
        for p in proxies:
            await p.start()
        dead, lagging, erring, _good = proxies
        client = RpcClient(
            RpcConfig(
                urls=tuple(p.url for p in proxies),
                max_lag_blocks=3,
                cooldown_seconds=0.05,
                max_cooldown_seconds=0.1,
                policy=FAST,
            )
        )
        try:
            await client.check_endpoints()
            start = int(await client.call("eth_blockNumber", []), 16)
            for _ in range(12):
                await client.call("evm_mine", [], block_sensitive=False)
            await dead.kill()
            lagging.mode, lagging.lag = "lag", 10
            erring.mode = "error"
            answers = []
            for n in range(20):
                if n == 10:
                    erring.mode = "rpc_error"
                latest = await client.latest_block()
                code = await client.call("eth_getCode", ["0x" + "00" * 20, latest["hash"]])
                balance = await client.call("eth_getBalance", ["0x" + "00" * 20, "latest"])
                answers.append((int(latest["number"], 16), code, balance))
                await client.call("evm_mine", [], block_sensitive=False)
            states = {
                p.url: client.state(e) for p, e in zip(proxies, client.endpoints, strict=True)
            }
            lagging.mode, erring.mode = "pass", "pass"
            await asyncio.sleep(0.15)  # the cool-downs end
            await client.latest_block()
            recovered = [client.state(e) for e in client.endpoints[1:]]
            heads = [int(a[0]) - start for a in answers]
            return {
                "heads": heads,
                "states": [states[p.url] for p in proxies],
                "recovered": recovered,
            }
        finally:
            await client.close()
            for p in proxies:
                await p.kill()

    result = asyncio.run(go())
    assert result["heads"] == list(range(12, 32))  # the highest head, every block
    assert result["states"][0] == "down" and result["states"][3] == "healthy"
    assert result["states"][1] == "lagging"
    assert result["recovered"] == ["healthy", "healthy", "healthy"]


def test_a_broadcast_goes_to_every_healthy_endpoint(node: str) -> None:
    from eth_account import Account

    account = Account.from_key(DEV_KEY)
    chain_id = int(rpc(node, "eth_chainId"), 16)
    nonce = int(rpc(node, "eth_getTransactionCount", [account.address, "pending"]), 16)
    tx = {
        "to": account.address,
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "nonce": nonce,
        "chainId": chain_id,
        "type": 2,
    }
    raw = bytes(account.sign_transaction(tx).raw_transaction)

    async def go() -> tuple[str, list[int]]:
        proxies = [Proxy(node) for _ in range(3)]
        for p in proxies:
            await p.start()
        client = RpcClient(RpcConfig(urls=tuple(p.url for p in proxies), policy=FAST))
        try:
            tx_hash = await client.broadcast(raw)
            again = await client.broadcast(raw)  # already known everywhere: still sent
            assert again == tx_hash
            await client.call("evm_mine", [], block_sensitive=False)
            with pytest.raises(NonceTooLow):
                await client.broadcast(raw)  # mined: the nodes' verdict, not retried
            return tx_hash, [p.methods["eth_sendRawTransaction"] for p in proxies]
        finally:
            await client.close()
            for p in proxies:
                await p.kill()

    tx_hash, forwarded = asyncio.run(go())
    receipt = rpc(node, "eth_getTransactionReceipt", [tx_hash])
    assert receipt is not None and int(receipt["status"], 16) == 1
    assert forwarded == [3, 3, 3]  # every endpoint got every broadcast
