"""New heads from a real anvil: websocket subscriptions on several endpoints, polling of every
HTTP endpoint alongside them, and a head source that no single failure can stop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from anvil_proxy import Proxy, anvil, rpc

from keeper.chain.blocks import HeadSource, LatestHead
from keeper.chain.retry import RetryPolicy
from keeper.chain.rpc import RpcClient, RpcConfig

FAST = RetryPolicy(attempts=2, max_seconds=2, initial_wait=0.01, max_wait=0.02)


@pytest.fixture(scope="module")
def node() -> Iterator[str]:
    with anvil("--no-mining") as url:
        yield url


def head_number(url: str) -> int:
    return int(rpc(url, "eth_blockNumber"), 16)


async def collect(
    source: HeadSource, slot: LatestHead, node: str, count: int, gap: float = 0.0
) -> list[int]:
    """Mine ``count`` blocks one by one; the head the source delivers after each."""
    task = asyncio.create_task(source.run(slot))
    seen: list[int] = []
    try:
        await asyncio.sleep(0.3)  # subscribed (or polled once) before the blocks come
        for _ in range(count):
            await asyncio.sleep(gap)
            await asyncio.to_thread(rpc, node, "evm_mine")
            mined = head_number(node)
            block, _ = await asyncio.wait_for(slot.take(), 10)
            while block.number < mined:  # the head it started at comes first
                block, _ = await asyncio.wait_for(slot.take(), 10)
            seen.append(block.number)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return seen


def client(*urls: str) -> RpcClient:
    return RpcClient(RpcConfig(urls=urls, policy=FAST, cooldown_seconds=0.01))


def test_heads_arrive_over_one_of_several_websockets_when_polling_is_slow(node: str) -> None:
    async def go() -> list[int]:
        rpc_client = client(node)
        ws = [node.replace("http://", "ws://"), "ws://127.0.0.1:1"]  # the second is dead
        source = HeadSource(rpc_client, ws, poll_interval=60, reconnect_max_seconds=1)
        try:
            return await collect(source, LatestHead(), node, 3)
        finally:
            await rpc_client.close()

    start = head_number(node)
    assert asyncio.run(go()) == [start + 1, start + 2, start + 3]


@asynccontextmanager
async def silent_websocket() -> AsyncIterator[tuple[str, list[int]]]:
    """A websocket node that accepts ``eth_subscribe`` and then never sends a head."""
    connections = [0]

    async def handler(request: web.Request) -> web.WebSocketResponse:
        connections[0] += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):  # web3 sends binary frames
                call = json.loads(message.data)
                await ws.send_json({"jsonrpc": "2.0", "id": call["id"], "result": "0x51"})
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}", connections
    finally:
        await runner.cleanup()


def test_a_websocket_open_but_silent_does_not_blind_the_keeper(node: str) -> None:
    """The subscription is up and says nothing (silence timeout far away): the poll that
    runs alongside delivers every head."""

    async def go() -> tuple[list[int], int]:
        rpc_client = client(node)
        async with silent_websocket() as (ws_url, connections):
            source = HeadSource(rpc_client, [ws_url], poll_interval=0.05, silence_seconds=600)
            try:
                return await collect(source, LatestHead(), node, 4), connections[0]
            finally:
                await rpc_client.close()

    start = head_number(node)
    seen, connections = asyncio.run(go())
    assert seen == [start + 1, start + 2, start + 3, start + 4]
    assert connections == 1  # still subscribed: nothing was torn down


def test_a_silent_websocket_is_resubscribed(node: str, caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> int:
        rpc_client = client(node)
        async with silent_websocket() as (ws_url, connections):
            source = HeadSource(
                rpc_client,
                [ws_url],
                poll_interval=0.05,
                silence_seconds=0.2,
                reconnect_max_seconds=0.2,
            )
            try:
                await collect(source, LatestHead(), node, 3, gap=0.5)
            finally:
                await rpc_client.close()
            return connections[0]

    with caplog.at_level("WARNING"):
        connections = asyncio.run(go())
    assert "no newHeads for 0.2s" in caplog.text
    assert connections >= 2


def test_rate_limits_and_dead_endpoints_never_stop_the_head_poll(
    node: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every poll fails for a while (429 from one endpoint, the other killed): the head
    source logs and goes on, and delivers heads as soon as an endpoint answers again."""

    async def go() -> list[int]:
        limited, dead = Proxy(node), Proxy(node)
        await limited.start()
        await dead.start()
        limited.mode = "rate_limit"  # HTTP 429 ...
        rpc_client = client(limited.url, dead.url)
        await dead.kill()
        source = HeadSource(rpc_client, [], poll_interval=0.05)
        slot = LatestHead()
        task = asyncio.create_task(source.run(slot))
        try:
            await asyncio.sleep(0.5)  # ... many failed polls
            limited.mode = "pass"
            return await collect_running(task, slot, node, 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await rpc_client.close()
            await limited.kill()

    start = head_number(node)
    with caplog.at_level("WARNING"):
        seen = asyncio.run(go())
    assert seen == [start + 1, start + 2]
    assert "polling the latest block failed" in caplog.text


async def collect_running(
    task: asyncio.Task[Any], slot: LatestHead, node: str, count: int
) -> list[int]:
    seen: list[int] = []
    for _ in range(count):
        await asyncio.to_thread(rpc, node, "evm_mine")
        mined = head_number(node)
        block, _ = await asyncio.wait_for(slot.take(), 10)
        while block.number < mined:
            block, _ = await asyncio.wait_for(slot.take(), 10)
        seen.append(block.number)
    assert not task.done()
    return seen
