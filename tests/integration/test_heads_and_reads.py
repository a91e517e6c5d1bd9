"""New heads over the websocket (and polling when it fails), one-call reads, the status CLI."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from conftest import ForkedWorld
from keeper_support import keeper_settings, start_keeper

from keeper.chain.blocks import HeadSource, LatestHead
from keeper.cli import main as keeper_cli
from keeper.core.types import Action
from keeper.runner import make_web3


def collect_heads(
    rpc_url: str,
    ws_url: str | None,
    chain: Any,
    count: int,
    silence_seconds: float = 60.0,
    gap_seconds: float = 0.0,
) -> list[int]:
    async def go() -> list[int]:
        w3 = make_web3(keeper_settings(rpc_url, Path("unused"), "sqlite://"))
        slot = LatestHead()
        source = HeadSource(
            w3, ws_url, poll_interval=0.05, reconnect_max_seconds=1, silence_seconds=silence_seconds
        )
        task = asyncio.create_task(source.run(slot))
        seen: list[int] = []
        try:
            await asyncio.sleep(0.5)  # subscribed (or polling) before the blocks come
            for _ in range(count):
                await asyncio.sleep(gap_seconds)
                await asyncio.to_thread(chain.mine)
                mined = chain.blocks.head.number
                block, _ = await asyncio.wait_for(slot.take(), 10)
                while block.number < mined:  # polling also delivers the head it started at
                    block, _ = await asyncio.wait_for(slot.take(), 10)
                seen.append(block.number)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await w3.provider.disconnect()
        return seen

    return asyncio.run(go())


def test_new_heads_arrive_over_the_websocket(rpc_url: str, chain: Any) -> None:
    ws_url = rpc_url.replace("http://", "ws://")
    start = chain.blocks.head.number
    seen = collect_heads(rpc_url, ws_url, chain, 3)
    assert seen == [start + 1, start + 2, start + 3]


def test_polling_takes_over_when_the_websocket_fails(
    rpc_url: str, chain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    start = chain.blocks.head.number
    with caplog.at_level("WARNING"):
        seen = collect_heads(rpc_url, "ws://127.0.0.1:1", chain, 2)
    assert seen[-1] == start + 2
    assert "polling" in caplog.text


@contextmanager
def silent_websocket() -> Iterator[tuple[str, list[int]]]:
    """A websocket node that accepts ``eth_subscribe`` and then never sends a head.

    Yields its URL and a one-item list counting the connections made to it."""
    connections = [0]
    started = threading.Event()
    loop = asyncio.new_event_loop()
    where: list[str] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        connections[0] += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):  # web3 sends binary frames
                call = json.loads(message.data)
                await ws.send_json({"jsonrpc": "2.0", "id": call["id"], "result": "0x51"})
        return ws

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        where.append(f"ws://127.0.0.1:{port}")
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield where[0], connections
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_a_websocket_that_goes_silent_is_dropped_for_polling_and_reconnected(
    rpc_url: str, chain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    start = chain.blocks.head.number
    with silent_websocket() as (ws_url, connections), caplog.at_level("WARNING"):
        # 0.3 s of silence, then 1 s of polling before the next subscription: heads keep coming
        seen = collect_heads(rpc_url, ws_url, chain, 4, silence_seconds=0.3, gap_seconds=0.6)
        made = connections[0]
    assert seen == [start + 1, start + 2, start + 3, start + 4]  # polled from the HTTP node
    assert "no newHeads for 0.3s" in caplog.text
    assert made >= 2  # after polling for a while it subscribed again


def test_a_vault_that_cannot_be_read_is_skipped_alone(
    rpc_url: str, fresh_world: ForkedWorld, governance: Any, chain: Any, tmp_path: Path
) -> None:
    k = start_keeper(
        keeper_settings(
            rpc_url, fresh_world.manifest_file, f"sqlite:///{tmp_path / 'k.sqlite'}", dry_run=True
        )
    )
    try:
        # A registered address whose getState() reverts: here the price feed contract.
        fresh_world.registry.addVault(fresh_world.feed, sender=governance)
        decisions = k.tick(chain)
        chain.mine()
        report_calls = k.tick_head().rpc_calls
    finally:
        k.stop()
    bad = decisions[fresh_world.feed.address]
    assert bad.action == Action.SKIP and bad.reason.startswith("unreadable")
    for vault in fresh_world.vaults.values():
        assert decisions[vault.address].action == Action.HOLD
    assert report_calls == 1  # one aggregate3 eth_call for the whole block


def test_status_prints_every_vault_with_its_last_decision(
    rpc_url: str,
    fresh_world: ForkedWorld,
    chain: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db_url = f"sqlite:///{tmp_path / 'k.sqlite'}"
    k = start_keeper(keeper_settings(rpc_url, fresh_world.manifest_file, db_url, dry_run=True))
    try:
        k.tick(chain)
    finally:
        k.stop()
    monkeypatch.setenv("KEEPER_DB_URL", db_url)
    assert keeper_cli(["status"]) == 0
    out = capsys.readouterr().out
    for vault in fresh_world.vaults.values():
        assert vault.address in out
    assert "inside band" in out
    assert f"last processed block {chain.blocks.head.number}" in out
    assert "no transaction in flight" in out  # a dry run sends nothing
