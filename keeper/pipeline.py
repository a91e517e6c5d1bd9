"""One block's tick, top to bottom: link the head -> read -> decide -> follow the journal ->
act -> persist.

The block's multicall leaves first (the tick's longest request). The journal is followed
(receipts, reorgs, stuck or forgotten transactions) while that read is in flight; whether
journaled work is still wanted is judged on this block's decisions, never the previous
block's, so only a re-decision waits for them.

Everything the tick needs is passed in (:class:`Pipeline` fields), so tests can drive it
with fakes or against a real node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from keeper.chain.blocks import ChainFollower
from keeper.chain.reader import Decided, Snapshot, StateReader
from keeper.core.chaintrack import ChainUpdate
from keeper.core.decide import CostConfig, VaultMemory, decide_block, remember, reopen
from keeper.core.fees import UsualFee
from keeper.core.types import Action, BlockRef, Decision
from keeper.errors import BlockUndecided, KeeperError
from keeper.store import Markers, Store

log = logging.getLogger("keeper.pipeline")

REGISTRY_LOG_SPAN = 2_000
"""At most this many blocks of registry events are asked for at once (only to log them)."""


class Actor(Protocol):
    """What turns decisions into transactions (absent in a dry run)."""

    def read_ahead(self, head: BlockRef) -> None:
        """A head arrived: start the chain reads that do not depend on its decisions."""

    async def act(
        self, block: BlockRef, snapshot: Snapshot, decisions: Sequence[Decision]
    ) -> set[str]:
        """Submit the rebalances it can; return the vaults whose rebalance is now in flight."""

    async def on_chain_update(
        self, update: ChainUpdate, decided: Awaitable[Decided]
    ) -> dict[str, str]:
        """Started once the head is linked, while its state is read: track receipts, handle
        reorgs of mined ones, re-decide stuck or forgotten transactions from the block's
        decisions (``decided``: awaited only when something must be re-decided). Returns
        the governance triggers (vault -> "request" | "params") whose rebalance failed on
        chain: they were not handled after all, and fire again next block."""

    async def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class TickStages:
    """Seconds the last tick spent in each step (logs, the latency benchmark)."""

    read: float  # linking the head and the multicall read
    decide: float
    follow: float  # waiting, once decided, for the journal's pass (receipts, reorgs, stuck work)
    act: float  # size, net, quote, simulate, send
    commit: float  # the tick's one store transaction


@dataclass(frozen=True)
class TickReport:
    block: BlockRef
    decisions: tuple[Decision, ...]
    acted: frozenset[str]
    rpc_calls: int
    chain: ChainUpdate


@dataclass
class Pipeline:
    reader: StateReader
    follower: ChainFollower
    store: Store
    costs: CostConfig
    actor: Actor | None = None
    vaults: tuple[str, ...] = ()
    registry_version: int = -1
    registry_block: int | None = None  # the block of the last registry sync
    memory: dict[str, VaultMemory] = field(default_factory=dict)
    skip_reasons: dict[str, str] = field(default_factory=dict)  # vault -> last skip logged
    usual_fee: UsualFee | None = None  # the base fee's usual level before this block
    stored_markers: dict[str, Markers] = field(default_factory=dict)  # as in the database
    stages: TickStages | None = None  # where the last tick's time went

    async def tick(self, head: BlockRef, superseded: Sequence[int] = ()) -> TickReport | None:
        """One block: link it (gaps, reorgs) while reading everything in one multicall ->
        follow the journal (receipts, reorgs) while the read is in flight, decide every vault,
        re-decide journaled work with these decisions -> act (unless dry run) -> persist and
        log."""
        started = time.perf_counter()
        # The head's state is read while it is linked to the processed chain (the read
        # does not depend on what the link finds: a reorg only says what was dropped).
        # Started first: its multicall is the tick's longest request.
        reading = asyncio.ensure_future(self._read(head))
        # its failure is raised where it is awaited; retrieved here too, for when linking
        # fails first and it is never awaited
        reading.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            # one turn of the loop: the multicall's request leaves before the journal's
            # reads are looked up and started, and before linking
            await asyncio.sleep(0)
            if self.actor is not None:  # the journal's reads run alongside linking and reading
                self.actor.read_ahead(head)
            update = await self.follower.follow(head)
        except BaseException:
            reading.cancel()
            raise
        self._log_chain(update, superseded)
        if update.head is None:  # nothing new (this head was processed already)
            reading.cancel()
            return None
        block = update.head
        # The journal is followed (receipts, reorgs) while the state is read and decided;
        # it waits for the decisions only to re-decide journaled work.
        decided_now: asyncio.Future[Decided] = asyncio.get_running_loop().create_future()
        following = (
            None
            if self.actor is None
            else asyncio.ensure_future(self.actor.on_chain_update(update, decided_now))
        )
        try:
            snapshot, calls = await reading
            read = time.perf_counter()
            decisions = self._decide(block, snapshot)
        except BaseException as exc:
            await _unblock(following, decided_now, exc)
            raise
        decided_now.set_result((snapshot, decisions))
        decided = followed = time.perf_counter()
        failed: dict[str, str] = {}
        if self.actor is None or following is None:
            acted = {d.vault for d in decisions if d.action == Action.REBALANCE}
        else:
            failed = await following
            followed = time.perf_counter()
            acted = await self.actor.act(block, snapshot, decisions)
        acted_at = time.perf_counter()
        changed = self._remember(block, snapshot, decisions, acted) | self._reopen(failed)
        # One transaction for the tick (the backfilled blocks keep the stored chain linked
        # across gaps); the journal's own writes were committed before each broadcast.
        self.store.commit_block(block, decisions, changed, backfilled=update.added[:-1])
        self.stored_markers |= changed  # only once they are in the database
        self.stages = TickStages(
            read=read - started,
            decide=decided - read,
            follow=followed - decided,
            act=acted_at - followed,
            commit=time.perf_counter() - acted_at,
        )
        _log_decisions(decisions, acted, self.skip_reasons, dry_run=self.actor is None)
        return TickReport(block, decisions, frozenset(acted), calls, update)

    def _decide(self, block: BlockRef, snapshot: Snapshot) -> tuple[Decision, ...]:
        return decide_block(
            block,
            snapshot.base_fee_wei,
            snapshot.vaults,
            self.memory,
            self.costs,
            self._usual_base_fee(block, snapshot.base_fee_wei),
        ) + _unreadable(block, snapshot)

    def _usual_base_fee(self, block: BlockRef, base_fee_wei: int) -> int | None:
        """The base fee's usual level before this block (for the band's gas timing, when it
        is on), then this block's fee folded in."""
        before = self.usual_fee
        if before is None:
            self.usual_fee = UsualFee(float(base_fee_wei), block.timestamp)
        else:
            self.usual_fee = before.observe(
                base_fee_wei, block.timestamp, self.costs.usual_fee_half_life_seconds
            )
        if before is None or not self.costs.gas_half_life_seconds:
            return None
        return round(before.wei)

    def _remember(
        self, block: BlockRef, snapshot: Snapshot, decisions: Sequence[Decision], acted: set[str]
    ) -> dict[str, Markers]:
        """Carry the oracle rounds and governance counters to the next block, and store the
        counters that must survive a restart: a vault's baseline the first time it is seen
        (a request made while the keeper is down then still fires), and the counters of the
        requests handled by a live keeper (a dry run never marks a request handled in the
        database a live keeper will use). Returns the markers that differ from the stored ones."""
        satisfied = {d.vault for d in decisions if d.action == Action.HOLD and d.trigger}
        handled = acted | satisfied
        first_seen = {s.address for s in snapshot.vaults if s.address not in self.memory}
        self.memory = remember(
            snapshot.vaults,
            self.memory,
            handled,
            block.timestamp,
            self.costs,
        )
        return self._store_markers(first_seen | (handled if self.actor is not None else set()))

    def _store_markers(self, vaults: set[str]) -> dict[str, Markers]:
        """The markers of ``vaults`` that differ from the stored ones."""
        changed = {}
        for vault in vaults:
            mem = self.memory.get(vault)
            if mem is None:
                continue
            now = Markers(mem.request_nonce, mem.params_version)
            if self.stored_markers.get(vault) != now:
                changed[vault] = now
        return changed

    def _reopen(self, failed: dict[str, str]) -> dict[str, Markers]:
        if not failed:
            return {}
        self.memory = reopen(self.memory, failed)
        for vault, trigger in failed.items():
            log.warning(
                "governance trigger fires again: its rebalance failed on chain",
                extra={"fields": {"vault": vault, "trigger": trigger}},
            )
        return self._store_markers(set(failed))

    async def _read(self, block: BlockRef) -> tuple[Snapshot, int]:
        """One multicall; a second read only in the block where the registry changed."""
        snapshot = await self.reader.read(block, self.vaults)
        calls = snapshot.rpc_calls
        if snapshot.registry_version != self.registry_version:
            await self._sync_registry(block, snapshot.registry_version)
            snapshot = await self.reader.read(block, self.vaults)
            calls += 1 + snapshot.rpc_calls
        return snapshot, calls

    async def _sync_registry(self, block: BlockRef, version: int) -> None:
        """Follow the registry: its events since the last sync say what changed and where;
        its ``vaults()`` list at this block is the truth they must agree with."""
        current = await self.reader.registry_vaults(block)
        if self.registry_block is not None:
            await self._log_registry_events(self.registry_block + 1, block.number, current)
        for vault in (v for v in current if v not in self.vaults):
            log.info("vault added", extra={"fields": {"vault": vault, "block": block.number}})
            if vault not in self.memory:
                self._restore_markers(vault)
        for vault in (v for v in self.vaults if v not in current):
            log.info("vault removed", extra={"fields": {"vault": vault, "block": block.number}})
            self.memory.pop(vault, None)
        self.vaults, self.registry_version, self.registry_block = current, version, block.number

    async def _log_registry_events(self, first: int, last: int, current: Sequence[str]) -> None:
        if first > last:  # a reorg took the chain below the last sync
            return
        first = max(first, last - REGISTRY_LOG_SPAN + 1)  # providers cap eth_getLogs ranges
        try:
            events = await self.reader.registry_events(first, last)
        except KeeperError as exc:  # the events only explain the change; vaults() is the truth
            log.warning(
                "registry events not read: following vaults()",
                extra={"fields": {"first": first, "last": last, "error": str(exc)}},
            )
            return
        replayed = list(self.vaults)
        for event in events:
            name = "VaultAdded" if event.added else "VaultRemoved"
            log.info(
                f"registry {name}",
                extra={
                    "fields": {
                        "vault": event.vault,
                        "block": event.block_number,
                        "tx": event.tx_hash,
                    }
                },
            )
            if event.added:
                replayed.append(event.vault)
            elif event.vault in replayed:
                replayed.remove(event.vault)
        if sorted(replayed) != sorted(current):
            log.warning(
                "registry events and vaults() disagree: following vaults()",
                extra={"fields": {"from_events": replayed, "listed": list(current)}},
            )

    def _restore_markers(self, vault: str) -> None:
        markers = self.store.get_markers(vault)
        if markers is not None:
            self.stored_markers[vault] = markers
            self.memory[vault] = VaultMemory(markers.request_nonce, markers.params_version)

    def _log_chain(self, update: ChainUpdate, superseded: Sequence[int]) -> None:
        if superseded:
            log.info(
                "heads superseded before processing: moving to the newest",
                extra={"fields": {"skipped": list(superseded)}},
            )
        if update.unverified_gap:
            first, last = update.unverified_gap
            log.warning(
                "gap larger than the backfill limit: blocks not verified",
                extra={"fields": {"first": first, "last": last}},
            )
        if update.reorg:
            dropped = [b.number for b in update.dropped]
            self.store.forget_blocks_from(min(dropped))
            log.warning(
                "reorg: decisions of dropped blocks are re-evaluated at the new head",
                extra={"fields": {"dropped": dropped, "new": [b.number for b in update.added]}},
            )
        elif len(update.added) > 1:
            log.info(
                "backfilled blocks",
                extra={"fields": {"blocks": [b.number for b in update.added[:-1]]}},
            )


async def _unblock(
    following: asyncio.Future[dict[str, str]] | None,
    decided_now: asyncio.Future[Decided],
    why: BaseException,
) -> None:
    """The block could not be read or decided: the journal's pass, if it waits for the
    decisions, is told so (its re-decisions answer "unknown": wait) and is let finish; on
    cancellation (shutdown) it is cancelled too."""
    if following is None:
        return
    if not isinstance(why, Exception):
        following.cancel()
        return
    decided_now.set_exception(BlockUndecided(f"this block was not decided: {why}"))
    try:
        await following
    except KeeperError as exc:
        log.warning("journal not followed", extra={"fields": {"error": str(exc)}})
    finally:
        decided_now.exception()  # retrieved: nothing may have waited for it


def _unreadable(block: BlockRef, snapshot: Snapshot) -> tuple[Decision, ...]:
    return tuple(
        Decision(
            vault=u.vault,
            block_number=block.number,
            block_hash=block.hash,
            action=Action.SKIP,
            reason=f"unreadable: {u.reason}",
        )
        for u in snapshot.unreadable
    )


def _log_decisions(
    decisions: Sequence[Decision], acted: set[str], skips: dict[str, str], dry_run: bool
) -> None:
    """Rebalances at INFO; a skip at WARNING when it starts or its reason changes, at DEBUG
    while it lasts (a vault skipped for an hour logs one warning, not one per block)."""
    for d in decisions:
        if d.action != Action.SKIP:
            skips.pop(d.vault, None)
        if d.action == Action.HOLD:
            continue
        fields = {
            "vault": d.vault,
            "block": d.block_number,
            "action": d.action.value,
            "reason": d.reason,
            "delta": d.delta,
            "deviation": d.deviation,
            "band": d.band,
            "gamma": d.gamma,
            "urgent": d.urgent,
            "trade_wei": d.trade_wei,
            "sent": d.vault in acted and not dry_run,
        }
        level = logging.INFO
        if d.action == Action.SKIP:
            level = logging.DEBUG if skips.get(d.vault) == d.reason else logging.WARNING
            skips[d.vault] = d.reason
        log.log(level, "decision", extra={"fields": fields})
