"""Issue 10 item 5: an RPC blackhole does not wedge the keeper.

A real ``keeper run`` talks to the fork through a TCP proxy on 127.0.0.1. During the
blackhole the proxy accepts connections and reads them but never answers, and the
connections open when it began go silent for good (no FIN, no RST: as when packets are
dropped). The keeper's RPC timeout is set to ``RPC_TIMEOUT`` s and the blackhole lasts
until ``/health`` said 503 and at least 4x that timeout passed, so every request in flight
(reads, head polls, the sending side's web3 calls) timed out at least once. Three cases:
the blackhole starts with the keeper idle and the price moves out of band during it; it
starts by itself at the keeper's broadcast of the rebalance (heads polled over HTTP); the
same with heads from a websocket subscription too (that connection goes silent and stays
so). Once it ends, blocks are processed again, the vaults are rebalanced back into their
bands within a few blocks, ``/health`` says 200 again, and SIGTERM still stops the keeper
promptly (a silent websocket used to hold the shutdown for 20 s). Times are printed (-s).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from anvil_proxy import free_port
from conftest import ForkedWorld
from keeper_support import reached, spawn_keeper, wait_until

from keeper.core.types import Action, Decision
from keeper.store import JournalState, Store, TxKind

RPC_TIMEOUT = 2.0  # KEEPER_RPC_TIMEOUT_SECONDS for this test (the default is 10 s)
HEALTH_MAX_AGE = 5.0  # KEEPER_HEALTH_MAX_AGE_SECONDS (the 200 checks have this much slack)
BLACKHOLE_AT_LEAST = 4 * RPC_TIMEOUT
BLOCK_SECONDS = 0.5  # a block this often during the blackhole
RECOVER_BLOCKS = 6  # every vault back in band within this many blocks after it


@dataclass(eq=False)
class _Link:
    """One proxied connection; ``silent``: swallowed both ways from now on."""

    silent: bool = False


class BlackholeProxy:
    """A TCP proxy to ``upstream`` on its own event loop (thread); see the module docstring."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname is not None and parts.port is not None
        self._upstream = (parts.hostname, parts.port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.dark = False
        self.dark_on = b""  # the blackhole starts by itself at a request holding these bytes
        self.swallowed = 0  # bytes read and never answered
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._serve, "127.0.0.1", self.port))

    def blackhole(self, on: bool) -> None:
        """Start (every open connection goes silent for good) or end the blackhole."""

        def switch() -> None:
            self.dark = on
            if on:
                for link in self._links:
                    link.silent = True

        self._loop.call_soon_threadsafe(switch)

    def stop(self) -> None:
        async def shut() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        self._run(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link = _Link(silent=self.dark)
        self._links.add(link)
        upstream: asyncio.StreamWriter | None = None
        try:
            if link.silent:
                await self._pump(reader, None, link)
                return
            up_reader, upstream = await asyncio.open_connection(*self._upstream)
            answers = asyncio.ensure_future(self._pump(up_reader, writer, link, hold=True))
            try:
                await self._pump(reader, upstream, link)  # until the keeper hangs up
            finally:
                answers.cancel()
                await asyncio.gather(answers, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(link)
            self._tasks.discard(task)
            for w in (writer, upstream):
                if w is not None:
                    w.close()

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter | None,
        link: _Link,
        hold: bool = False,
    ) -> None:
        while data := await src.read(65536):
            if self.dark_on and self.dark_on in data and not hold:
                self.dark_on = b""
                self.dark = True
                for other in self._links:
                    other.silent = True
            if link.silent or dst is None:
                self.swallowed += len(data)
                continue
            dst.write(data)
            await dst.drain()
        if dst is not None and not link.silent and not dst.is_closing():
            dst.close()  # a close passes through, except in the dark
        if link.silent and hold:
            await asyncio.Event().wait()  # the node hung up in the dark: say nothing, hold on


@pytest.fixture
def proxy(rpc_url: str) -> Iterator[BlackholeProxy]:
    hole = BlackholeProxy(rpc_url)
    hole.start()
    yield hole
    hole.stop()


def health(port: int) -> int:
    """``/health``'s HTTP status (0: no answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def out_of_band(d: Decision) -> bool:
    return abs(d.deviation) > d.band


def settled(decisions: list[Decision]) -> bool:
    return bool(decisions) and all(
        d.action == Action.HOLD and not out_of_band(d) for d in decisions
    )


def price_now(world: ForkedWorld) -> float:
    return float(world.feed.latestRoundData()[1]) / 1e8


@pytest.mark.parametrize(
    ("when", "heads"), [("idle", "poll"), ("mid-send", "poll"), ("mid-send", "ws")]
)
def test_a_blackholed_node_does_not_wedge_the_keeper(
    when: str,
    heads: str,
    proxy: BlackholeProxy,
    fresh_world: ForkedWorld,
    keeper_key: str,
    governance: Any,
    chain: Any,
    tmp_path: Path,
) -> None:
    log = tmp_path / "keeper.log"
    db_url = f"sqlite:///{tmp_path / 'keeper.sqlite'}"
    store = Store(db_url)
    port = free_port()
    vaults = list(fresh_world.vaults.values())
    ws = {"ws_url": proxy.url.replace("http", "ws")} if heads == "ws" else {}
    proc = spawn_keeper(
        proxy.url,
        fresh_world.manifest_file,
        db_url,
        log,
        private_key=keeper_key,
        metrics_port=str(port),
        rpc_timeout_seconds=str(RPC_TIMEOUT),
        health_max_age_seconds=str(HEALTH_MAX_AGE),
        **ws,
    )
    try:
        chain.mine()
        wait_until("the first block", reached(store, chain.blocks.head.number), proc, log, 60)
        wait_until("/health 200", lambda: health(port) == 200, proc, log)
        assert settled(store.latest_decisions()), "the vaults start in band"
        weth = {v.address: fresh_world.weth.balanceOf(v) for v in vaults}

        if when == "idle":  # dark first, then the price moves
            proxy.blackhole(True)
            move = fresh_world.set_price(price_now(fresh_world) + 7, governance)
        else:  # the price moves; dark from the keeper's first broadcast of the rebalance
            proxy.dark_on = b"eth_sendRawTransaction"
            move = fresh_world.set_price(price_now(fresh_world) + 7, governance)
            wait_until("the broadcast", lambda: proxy.dark, proc, log)
        started = time.monotonic()
        moved_at = chain.blocks.head.number
        assert int(fresh_world.feed.latestRoundData()[1]) == move
        dark_head = moved_at
        unhealthy = False
        deadline = started + 60
        while not unhealthy or time.monotonic() - started < BLACKHOLE_AT_LEAST:
            assert time.monotonic() < deadline, f"/health never said 503:\n{log.read_text()}"
            assert proc.poll() is None, f"keeper exited:\n{log.read_text()}"
            chain.mine()
            time.sleep(BLOCK_SECONDS)
            unhealthy = unhealthy or health(port) == 503
        dark_seconds = time.monotonic() - started
        last_dark = chain.blocks.head.number
        assert proxy.swallowed > 0, "the keeper talked to the node during the blackhole"
        processed = store.last_block()
        assert processed is not None and processed.number <= dark_head, "nothing got through"

        proxy.blackhole(False)
        ended = time.monotonic()
        chain.mine()
        back = chain.blocks.head.number
        wait_until("a block after the blackhole", reached(store, back), proc, log, 60)
        first_block_after = time.monotonic() - ended
        left = [d for n in range(moved_at, back + 1) for d in store.decisions_for_block(n)]
        assert any(out_of_band(d) for d in left), "the price move took vaults out of band"
        blocks = 0
        while not settled(store.decisions_for_block(chain.blocks.head.number)):
            blocks += 1
            assert blocks <= RECOVER_BLOCKS, f"still out of band:\n{log.read_text()}"
            chain.mine()
            wait_until("the next block", reached(store, chain.blocks.head.number), proc, log, 60)
        in_band_after = time.monotonic() - ended
        wait_until("/health 200 again", lambda: health(port) == 200, proc, log)
    finally:
        stopping = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        proc.wait(10)  # a silent websocket does not hold the shutdown (it held it 20 s)
        stop_seconds = time.monotonic() - stopping
    mined = [
        e
        for e in store.entries_in([JournalState.MINED], None)
        if e.kind == TxKind.REBALANCE and (e.mined_block_number or 0) > last_dark
    ]
    assert mined, "a rebalance was mined after the blackhole"
    for entry in mined:
        assert chain.provider.web3.eth.get_transaction_receipt(entry.tx_hash)["status"] == 1
    moved = [v.address for v in vaults if fresh_world.weth.balanceOf(v) != weth[v.address]]
    assert moved, "the rebalance changed a hedge on chain"
    print(
        f"\n{when}, heads by {heads}: blackhole {dark_seconds:.1f}s (rpc timeout {RPC_TIMEOUT:g}s, "
        f"{proxy.swallowed} bytes swallowed); first block processed {first_block_after:.1f}s "
        f"after it ended, every vault in band after {in_band_after:.1f}s ({blocks} blocks); "
        f"stopped (SIGTERM) in {stop_seconds:.1f}s"
    )
