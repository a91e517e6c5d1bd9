"""One block's tick (``Pipeline.tick``) with fakes around it: the block's read leaves first,
the journal is followed while the block's state is still being read, waits for the block's
decisions only to re-decide, and is told when the block could not be read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import pytest

from keeper.chain.reader import Decided, Snapshot
from keeper.core.chaintrack import ChainUpdate
from keeper.core.decide import CostConfig
from keeper.core.types import BlockRef, Decision
from keeper.errors import BlockUndecided, RpcError
from keeper.pipeline import Pipeline
from keeper.store import Store

HEAD = BlockRef(7, "0x" + "07" * 32, "0x" + "06" * 32, 1_700_000_000, 10**9, 30_000_000)


class Follower:
    async def follow(self, head: BlockRef) -> ChainUpdate:
        return ChainUpdate(added=(head,))


class Reader:
    """Answers once the journal's pass has begun (a tick that followed the journal only
    after the read would wait here forever), or fails."""

    def __init__(self, journal_began: asyncio.Event, log: list[str], fails: bool) -> None:
        self.journal_began, self.log, self.fails = journal_began, log, fails

    async def read(self, block: BlockRef, vaults: Sequence[str]) -> Snapshot:
        self.log.append("read sent")  # its request leaves before it first waits
        await asyncio.wait_for(self.journal_began.wait(), timeout=5)
        self.log.append("read answered")
        if self.fails:
            raise RpcError("the node went away")
        return Snapshot(block, 10**9, block.timestamp, -1, (), (), rpc_calls=1)


class Actor:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.journal_began = asyncio.Event()

    def read_ahead(self, head: BlockRef) -> None:
        self.log.append("reads ahead")

    async def on_chain_update(
        self, update: ChainUpdate, decided: Awaitable[Decided]
    ) -> dict[str, str]:
        self.log.append("journal: receipts and reorgs")
        self.journal_began.set()
        try:
            snapshot, _ = await decided  # a stuck entry to re-decide
        except BlockUndecided as exc:
            self.log.append(f"journal: re-decision unknown ({type(exc).__name__})")
            return {}
        self.log.append(f"journal: re-decided at block {snapshot.block.number}")
        return {}

    async def act(
        self, block: BlockRef, snapshot: Snapshot, decisions: Sequence[Decision]
    ) -> set[str]:
        self.log.append("act")
        return set()

    async def close(self) -> None:
        return None


def pipeline(tmp_path: Path, fails: bool) -> tuple[Pipeline, list[str]]:
    log: list[str] = []
    actor = Actor(log)
    reader: Any = Reader(actor.journal_began, log, fails)
    follower: Any = Follower()
    store = Store(f"sqlite:///{tmp_path / 'keeper.db'}")
    costs = CostConfig(190_000, 10**9, 5.0, 0.5, 2000)
    return Pipeline(reader, follower, store, costs, actor=actor), log


def test_the_journal_is_followed_while_the_block_is_read_and_re_decided_after(
    tmp_path: Path,
) -> None:
    tick, log = pipeline(tmp_path, fails=False)
    report = asyncio.run(tick.tick(HEAD))
    assert report is not None and report.block == HEAD
    assert log == [
        "read sent",  # the block's multicall leaves first
        "reads ahead",
        "journal: receipts and reorgs",
        "read answered",
        "journal: re-decided at block 7",
        "act",
    ]


def test_a_block_that_cannot_be_read_lets_the_journal_pass_finish_undecided(
    tmp_path: Path,
) -> None:
    tick, log = pipeline(tmp_path, fails=True)
    with pytest.raises(RpcError, match="went away"):
        asyncio.run(tick.tick(HEAD))
    assert log == [
        "read sent",  # the block's multicall leaves first
        "reads ahead",
        "journal: receipts and reorgs",
        "read answered",
        "journal: re-decision unknown (BlockUndecided)",
    ]
