"""The head mailbox keeps only the newest head and says which it superseded."""

from __future__ import annotations

import asyncio

from keeper.chain.blocks import LatestHead
from keeper.core.types import BlockRef


def head(n: int, fork: str = "a") -> BlockRef:
    return BlockRef(n, f"{fork}{n}", f"{fork}{n - 1}", 1000 + n)


def test_a_newer_head_replaces_an_unread_one() -> None:
    async def go() -> tuple[BlockRef, list[int]]:
        slot = LatestHead()
        for n in (10, 11, 12):
            slot.put(head(n))
        return await slot.take()

    newest, superseded = asyncio.run(go())
    assert newest.number == 12 and superseded == [10, 11]


def test_the_same_head_twice_is_one_head() -> None:
    async def go() -> tuple[BlockRef, list[int]]:
        slot = LatestHead()
        slot.put(head(10))
        slot.put(head(10))
        return await slot.take()

    assert asyncio.run(go()) == (head(10), [])


def test_take_waits_for_a_head() -> None:
    async def go() -> BlockRef:
        slot = LatestHead()
        waiter = asyncio.create_task(slot.take())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        slot.put(head(5))
        return (await waiter)[0]

    assert asyncio.run(go()).number == 5
