"""The long-lived service: wire the settings into the pipeline and run it on every new head,
while this instance holds the leader lease (standing by otherwise)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.exc import DBAPIError

from keeper import doctor, monitor
from keeper.chain.blocks import ChainFollower, HeadSource, LatestHead, block_fetcher
from keeper.chain.reader import StateReader
from keeper.chain.rpc import RpcClient, RpcConfig, RpcObserver, endpoint_names
from keeper.config import GWEI, Addresses, Settings
from keeper.core.decide import CostConfig
from keeper.core.types import BlockRef
from keeper.errors import ConfigError, FatalError, LeaseLost, RetryableError
from keeper.metrics import Metrics
from keeper.pipeline import Actor, Pipeline
from keeper.store import Store, lease
from keeper.store.records import IN_FLIGHT_STATES

log = logging.getLogger("keeper.runner")


def make_rpc(settings: Settings, observer: RpcObserver | None = None) -> RpcClient:
    """The JSON-RPC client over every configured endpoint (``KEEPER_RPC_URLS``)."""
    config = RpcConfig(
        urls=settings.rpc_endpoints,
        timeout_seconds=settings.rpc_timeout_seconds,
        max_lag_blocks=settings.rpc_max_lag_blocks,
    )
    return RpcClient(config, observer)


def cost_config(settings: Settings) -> CostConfig:
    return CostConfig(
        gas_units_per_rebalance=settings.gas_units_per_rebalance,
        priority_fee_wei=int(settings.priority_fee_gwei * GWEI),
        dex_fee_bps=settings.dex_fee_bps,
        slippage_bps_per_unit=settings.slippage_bps_per_unit,
        oracle_max_jump_bps=settings.oracle_max_jump_bps,
        oracle_stale_margin_seconds=settings.oracle_stale_margin_seconds,
        vol_half_life_seconds=settings.vol_half_life_seconds,
        realized_vol_vaults=settings.realized_vol_vault_set,
        gas_half_life_seconds=settings.gas_half_life_seconds,
        usual_fee_half_life_seconds=settings.usual_fee_half_life_seconds,
    )


def expected_chain(settings: Settings) -> tuple[int | None, str]:
    """The chain id the keeper must find, and where that expectation came from."""
    if settings.chain_id is not None:
        return settings.chain_id, "KEEPER_CHAIN_ID"
    from_manifest = Addresses.resolve(settings).chain_id
    if from_manifest is not None:
        return int(from_manifest), f"the manifest {settings.manifest}"
    return None, "nothing (set KEEPER_CHAIN_ID or KEEPER_MANIFEST to check it)"


async def check_chain(settings: Settings, rpc: RpcClient, store: Store) -> int:
    """The nodes' chain id, once every endpoint agrees and it is the expected one and the
    database's (``ConfigError`` naming the setting)."""
    chain_id = await rpc.check_endpoints()
    expected, source = expected_chain(settings)
    if expected is not None and chain_id != expected:
        raise ConfigError(
            f"{settings.rpc_setting}: node is on chain {chain_id}, expected {expected} "
            f"(from {source})"
        )
    store.bind_chain(chain_id)
    return chain_id


@dataclass
class Keeper:
    settings: Settings
    rpc: RpcClient
    store: Store
    pipeline: Pipeline
    metrics: Metrics
    account: str | None = None  # the sending key's address (its balance is a metric)
    clock: Callable[[], float] = time.time

    @classmethod
    async def build(
        cls,
        settings: Settings,
        store: Store,
        actor: Actor | None,
        rpc: RpcClient,
        metrics: Metrics | None = None,
        account: str | None = None,
    ) -> Keeper:
        addresses = Addresses.resolve(settings)
        await check_chain(settings, rpc, store)
        follower = ChainFollower(
            block_fetcher(rpc),
            history=settings.reorg_history_blocks,
            max_backfill=settings.max_backfill_blocks,
            known=store.recent_blocks(settings.reorg_history_blocks),
        )
        reader = StateReader(
            rpc,
            addresses.multicall,
            addresses.registry,
            settings.multicall_chunk_size,
            settings.multicall_gas_budget,
        )
        pipeline = Pipeline(
            reader=reader, follower=follower, store=store, costs=cost_config(settings), actor=actor
        )
        if follower.tip is not None:
            log.info(
                "resuming after stored block",
                extra={"fields": {"block": follower.tip.number, "hash": follower.tip.hash}},
            )
        metrics = metrics or Metrics(started_at=time.time())
        return cls(settings, rpc, store, pipeline, metrics, account)

    async def close(self) -> None:
        """Release the node connections (the HTTP sessions of this event loop)."""
        await self.rpc.close()
        if self.pipeline.actor is not None:
            await self.pipeline.actor.close()

    async def run(self, max_blocks: int | None = None) -> None:
        """Process new heads until cancelled (or ``max_blocks`` heads, for tests and demos)."""
        slot = LatestHead()
        source = HeadSource(
            self.rpc,
            self.settings.ws_endpoints,
            self.settings.poll_interval_seconds,
            silence_seconds=self.settings.head_silence_seconds,
        )
        feeder = asyncio.create_task(source.run(slot), name="head-source")
        processed = 0
        try:
            while max_blocks is None or processed < max_blocks:
                head, superseded = await slot.take()
                self.metrics.head_taken()
                await self.tick(head, superseded)
                processed += 1
                if self.account is not None and processed % BALANCE_EVERY_BLOCKS == 1:
                    await self._observe_balance()
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)

    async def _observe_balance(self) -> None:
        try:
            wei = await self.rpc.call("eth_getBalance", [self.account, "latest"])
        except RetryableError as exc:
            log.warning("balance not read: %s", exc)
            return
        self.metrics.balance_eth.set(int(wei, 16) / 10**18)

    async def tick(self, head: BlockRef, superseded: list[int]) -> None:
        started = time.perf_counter()
        try:
            report = await self.pipeline.tick(head, superseded)
        except RetryableError as exc:
            self.metrics.observe_failure("retryable")
            log.warning("block %d not processed, will retry on the next head: %s", head.number, exc)
            return
        except FatalError as exc:
            if isinstance(exc, ConfigError | LeaseLost):
                raise
            self.metrics.observe_failure("fatal")
            log.error("block %d failed: %s", head.number, exc)
            return
        if report is not None:
            self.metrics.observe_tick(report, time.perf_counter() - started, self.clock())


BALANCE_EVERY_BLOCKS = 10


@dataclass
class LeaderLease:
    """Holds (or waits for) the database's leader lease (``keeper.store.lease``)."""

    store: Store
    ttl_seconds: float
    metrics: Metrics
    holder: str = field(default_factory=lease.holder_id)
    epoch: int | None = None

    @property
    def renew_every(self) -> float:
        return self.ttl_seconds / 4

    async def wait_until_leader(self) -> int:
        """Stand by (quietly: one INFO line) until this instance takes the lease."""
        announced = False
        while True:
            try:
                state = self.store.take_lease(self.holder, self.ttl_seconds)
            except DBAPIError as exc:
                log.warning("leader lease not read, trying again: %s", _db_reason(exc))
                await asyncio.sleep(self.renew_every)
                continue
            if isinstance(state, lease.Held):
                self.epoch = state.epoch
                self.metrics.lease_state(True, state.epoch)
                log.info(
                    "leader lease taken: this instance leads",
                    extra={"fields": {"holder": self.holder, "epoch": state.epoch}},
                )
                return state.epoch
            self.metrics.lease_state(False, state.epoch)
            if not announced:
                log.info(
                    "standing by: another instance holds the leader lease",
                    extra={
                        "fields": {
                            "leader": state.holder,
                            "epoch": state.epoch,
                            "expires_in": round(state.expires_in, 1),
                        }
                    },
                )
                announced = True
            await asyncio.sleep(min(self.renew_every, max(state.expires_in, 0.05)))

    async def hold(self) -> None:
        """Renew the lease every ``ttl / 4`` seconds; ``LeaseLost`` once another instance
        has it (or this one took it again at a new epoch after losing it)."""
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                state = self.store.take_lease(self.holder, self.ttl_seconds)
            except DBAPIError as exc:
                log.warning("leader lease not renewed, trying again: %s", _db_reason(exc))
                continue
            if isinstance(state, lease.Standby) or state.epoch != self.epoch:
                self.metrics.lease_state(False, state.epoch)
                raise LeaseLost(f"the leader lease moved to epoch {state.epoch}")

    def release(self) -> None:
        try:
            self.store.release_lease()
        except DBAPIError as exc:
            log.warning("leader lease not released (it expires by itself): %s", _db_reason(exc))


def _db_reason(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__


BuildActor = Callable[[Settings, Store, RpcClient], Awaitable[Actor]]


@dataclass
class Service:
    """``keeper run``: the monitor for the whole process, the lease, and a ``Keeper`` built
    afresh (journal reconciled) every time this instance becomes the leader."""

    settings: Settings
    store: Store
    build_actor: BuildActor | None
    account: str | None = None
    metrics: Metrics = field(default_factory=lambda: Metrics(started_at=time.time()).install())

    async def run(self, max_blocks: int | None = None) -> None:
        self.metrics.count_in_flight(lambda: len(self.store.entries_in(IN_FLIGHT_STATES)))
        server = await self._start_monitor()
        lease_holder = LeaderLease(self.store, self.settings.lease_ttl_seconds, self.metrics)
        try:
            while True:
                await lease_holder.wait_until_leader()
                try:
                    await self._lead(lease_holder, max_blocks)
                    return
                except LeaseLost as exc:
                    log.warning("stopped leading: %s; standing by", exc)
                except RetryableError as exc:  # the node or database is down at start
                    log.warning("could not start leading, trying again: %s", exc)
                    await asyncio.sleep(lease_holder.renew_every)
        finally:
            lease_holder.release()
            if server is not None:
                await server.cleanup()

    async def _lead(self, holder: LeaderLease, max_blocks: int | None) -> None:
        rpc = make_rpc(self.settings, self.metrics)
        actor = None
        try:
            await check_chain(self.settings, rpc, self.store)
            doctor.enforce(await doctor.preflight(self.settings, rpc, self.account))
            if self.build_actor is not None:
                actor = await self.build_actor(self.settings, self.store, rpc)
            keeper = await Keeper.build(
                self.settings, self.store, actor, rpc, self.metrics, self.account
            )
            log.info(
                "keeper started",
                extra={
                    "fields": {
                        "dry_run": self.settings.dry_run,
                        "rpc": endpoint_names(self.settings.rpc_endpoints),
                        "epoch": holder.epoch,
                    }
                },
            )
            await _first_of(keeper.run(max_blocks), holder.hold())
        finally:
            if actor is not None:
                await actor.close()
            await rpc.close()

    async def _start_monitor(self) -> web.AppRunner | None:
        port = self.settings.metrics_port
        if port is None:
            return None
        app = monitor.make_app(self.metrics, self.settings.health_max_age_seconds)
        return await monitor.start(app, self.settings.metrics_host, port)


async def _first_of(*jobs: Awaitable[None]) -> None:
    """Run ``jobs`` until the first one ends; the others are cancelled; its error is raised."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
