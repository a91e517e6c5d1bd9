"""New heads: HTTP polling of every endpoint alongside a websocket ``newHeads`` subscription
per websocket URL, coalesced to the newest head, and linked to the processed chain (gaps
backfilled, reorgs detected).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from web3 import AsyncWeb3, WebSocketProvider

from keeper.chain.rpc import RpcClient, endpoint_name
from keeper.core.chaintrack import ChainUpdate, jump, link, missing_parent, reanchor
from keeper.core.types import BlockRef
from keeper.errors import KeeperError, ReorgTooDeep, RpcError

log = logging.getLogger("keeper.blocks")


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def block_ref(block: Mapping[str, Any]) -> BlockRef:
    """A ``BlockRef`` from a JSON-RPC block or ``newHeads`` payload (hex or decoded)."""
    return BlockRef(
        number=_int(block["number"]),
        hash=_hex(block["hash"]),
        parent_hash=_hex(block["parentHash"]),
        timestamp=_int(block["timestamp"]),
        base_fee_wei=_int(block.get("baseFeePerGas") or 0),
        gas_limit=_int(block.get("gasLimit") or 0),
    )


class LatestHead:
    """A one-slot mailbox: a newer head replaces an unread older one (no backlog)."""

    def __init__(self) -> None:
        self._head: BlockRef | None = None
        self._superseded: list[int] = []
        self._ready = asyncio.Event()

    def put(self, head: BlockRef) -> None:
        if self._head is not None:
            if head.number < self._head.number and head.hash != self._head.hash:
                log.info("head went back from %d to %d", self._head.number, head.number)
            elif head.hash == self._head.hash:
                return
            else:
                self._superseded.append(self._head.number)
        self._head = head
        self._ready.set()

    async def take(self) -> tuple[BlockRef, list[int]]:
        """The newest head and the numbers of heads it superseded before they were read."""
        await self._ready.wait()
        self._ready.clear()
        head, superseded = self._head, self._superseded
        assert head is not None
        self._head, self._superseded = None, []
        return head, superseded


@dataclass
class HeadSource:
    """Feeds ``LatestHead`` forever from every source at once: the HTTP poll of every RPC
    endpoint (``RpcClient.latest_block``, the highest head wins) and a ``newHeads``
    subscription per websocket URL.

    The poll runs alongside the subscriptions, so a websocket that is open but silent
    (providers drop subscriptions without closing the socket) costs at most one poll
    interval. A subscription silent for ``silence_seconds`` is reconnected. A failed poll
    (a 429, a closed keep-alive connection, every node down) is logged and tried again:
    nothing stops the head source but cancellation. Heads older than the newest one handed
    on are dropped (one source lagging another is not a reorg; a reorg shows up in the
    parent hashes of the next head).

    Closing a websocket waits at most ``ws_close_seconds`` for the node: websockets' own
    ``close_timeout`` (10 s, waited for the closing handshake and again for the TCP close,
    and not cut short by cancellation) held every reconnect and the shutdown for 20 s when
    the node had gone silent.
    """

    rpc: RpcClient
    ws_urls: Sequence[str]
    poll_interval: float
    reconnect_max_seconds: float = 30.0
    silence_seconds: float = 60.0
    ws_close_seconds: float = 1.0
    _newest: BlockRef | None = field(default=None, init=False)

    async def run(self, slot: LatestHead) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._poll(slot), name="head-poll")
            for url in self.ws_urls:
                group.create_task(self._subscribe(slot, url), name=f"head-ws {endpoint_name(url)}")

    def _offer(self, slot: LatestHead, head: BlockRef) -> None:
        newest = self._newest
        if newest is not None and (
            head.number < newest.number
            or (head.number == newest.number and head.hash == newest.hash)
        ):
            return
        self._newest = head
        slot.put(head)

    async def _poll(self, slot: LatestHead) -> None:
        failures = 0
        while True:
            try:
                self._offer(slot, block_ref(await self.rpc.latest_block()))
                failures = 0
            except KeeperError as exc:
                failures += 1
                log.warning("polling the latest block failed (%d in a row): %s", failures, exc)
            await asyncio.sleep(self.poll_interval)

    async def _subscribe(self, slot: LatestHead, url: str) -> None:
        backoff = 1.0
        name = endpoint_name(url)
        while True:
            try:
                await self._stream(slot, url)
                backoff = 1.0
            except (TimeoutError, OSError, ConnectionError) as exc:
                log.warning("websocket %s failed (%s); reconnecting in %.0fs", name, exc, backoff)
            except Exception as exc:  # noqa: BLE001 - web3 raises many types; polling goes on
                log.warning("websocket %s error (%r); reconnecting in %.0fs", name, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.reconnect_max_seconds)

    async def _stream(self, slot: LatestHead, url: str) -> None:
        # One connection attempt: our own loop backs off (and the poll goes on meanwhile).
        provider = WebSocketProvider(
            url,
            max_connection_retries=1,
            websocket_kwargs={"close_timeout": self.ws_close_seconds},
        )
        async with AsyncWeb3(provider) as ws:
            await ws.eth.subscribe("newHeads")
            log.info("subscribed to newHeads on %s", endpoint_name(url))
            heads = ws.socket.process_subscriptions()
            while True:
                try:
                    async with asyncio.timeout(self.silence_seconds):
                        message = await anext(heads, None)
                except TimeoutError:
                    raise TimeoutError(f"no newHeads for {self.silence_seconds:g}s") from None
                if message is None:
                    return  # the node ended the subscription: reconnect
                self._offer(slot, block_ref(message["result"]))


def block_fetcher(rpc: RpcClient) -> FetchBlock:
    """Blocks by number through ``rpc`` (for ``ChainFollower``); a block the node does not
    have yet is ``RpcError`` (retried, or the head is retried next time)."""

    async def fetch(number: int) -> BlockRef:
        block = await rpc.call("eth_getBlockByNumber", [hex(number), False])
        if block is None:
            raise RpcError(f"block {number} not found")
        return block_ref(block)

    return fetch


FetchBlock = Callable[[int], Awaitable[BlockRef]]


class ChainFollower:
    """Keeps the window of processed blocks and turns each new head into a ``ChainUpdate``."""

    def __init__(
        self,
        fetch_block: FetchBlock,
        history: int,
        max_backfill: int,
        known: list[BlockRef] | None = None,
    ) -> None:
        self._fetch = fetch_block
        self._known: deque[BlockRef] = deque(known or [], maxlen=history)
        self._history = history
        self._max_backfill = max_backfill

    @property
    def tip(self) -> BlockRef | None:
        return self._known[-1] if self._known else None

    async def follow(self, head: BlockRef) -> ChainUpdate:
        known = list(self._known)
        tip = self.tip
        if tip is not None and head.number - tip.number - 1 > self._max_backfill:
            update = jump(known, head)
        else:
            update = await self._link(known, head)
        self._apply(update)
        return update

    async def _link(self, known: list[BlockRef], head: BlockRef) -> ChainUpdate:
        segment = [head]
        gap = await self._gap_blocks(known, head)
        try:
            while (need := missing_parent(known, segment, self._history)) is not None:
                fetched = gap.pop(need, None)
                if fetched is None or fetched.hash != segment[0].parent_hash:
                    fetched = await self._fetch(need)  # below the gap, or the chain moved
                segment.insert(0, fetched)
        except ReorgTooDeep as exc:
            # Refusing would refuse every later head too: the keeper would stop for good.
            log.error(
                "%s: every kept block is dropped, following the new chain from %d",
                exc,
                head.number,
            )
            return reanchor(known, head)
        try:
            return link(known, segment)
        except ValueError as exc:  # the chain moved while we fetched its blocks
            raise RpcError(f"chain changed while linking head {head.number}: {exc}") from exc

    async def _gap_blocks(self, known: list[BlockRef], head: BlockRef) -> dict[int, BlockRef]:
        """The blocks between the tip and ``head``, fetched at once rather than parent by
        parent (a gap after a reconnect, or heads superseded while busy); each is still
        linked by hash below, and any that does not link is fetched again."""
        if not known or head.number - known[-1].number <= 1:
            return {}
        numbers = range(known[-1].number + 1, head.number)
        blocks = await asyncio.gather(*(self._fetch(n) for n in numbers))
        return {b.number: b for b in blocks}

    def _apply(self, update: ChainUpdate) -> None:
        dropped = {b.number for b in update.dropped}
        while self._known and self._known[-1].number in dropped:
            self._known.pop()
        if update.unverified_gap:
            self._known.clear()  # the window no longer links; start again from the new head
        self._known.extend(update.added)
