"""The long-lived service: wire the settings into the pipeline and run it on every new head."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from keeper import monitor
from keeper.chain.blocks import ChainFollower, HeadSource, LatestHead, block_fetcher
from keeper.chain.reader import StateReader
from keeper.chain.rpc import RpcClient, RpcConfig, RpcObserver
from keeper.config import GWEI, Addresses, Settings
from keeper.core.decide import CostConfig
from keeper.core.types import BlockRef
from keeper.errors import ConfigError, FatalError, RetryableError
from keeper.metrics import Metrics
from keeper.pipeline import Actor, Pipeline
from keeper.store import Store
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
    clock: Callable[[], float] = time.time
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = Metrics(started_at=self.clock())

    @classmethod
    async def build(
        cls, settings: Settings, store: Store, actor: Actor | None, rpc: RpcClient
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
        return cls(settings, rpc, store, pipeline)

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
        server = await self._start_monitor()
        feeder = asyncio.create_task(source.run(slot), name="head-source")
        processed = 0
        try:
            while max_blocks is None or processed < max_blocks:
                head, superseded = await slot.take()
                await self.tick(head, superseded)
                processed += 1
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            if server is not None:
                await server.cleanup()

    async def _start_monitor(self) -> web.AppRunner | None:
        port = self.settings.metrics_port
        if port is None:
            return None
        app = monitor.make_app(
            self.metrics,
            self.settings.health_max_age_seconds,
            self.clock,
            in_flight=lambda: len(self.store.entries_in(IN_FLIGHT_STATES)),
        )
        return await monitor.start(app, self.settings.metrics_host, port)

    async def tick(self, head: BlockRef, superseded: list[int]) -> None:
        started = time.perf_counter()
        try:
            report = await self.pipeline.tick(head, superseded)
        except RetryableError as exc:
            self.metrics.observe_failure("retryable")
            log.warning("block %d not processed, will retry on the next head: %s", head.number, exc)
            return
        except FatalError as exc:
            if isinstance(exc, ConfigError):
                raise
            self.metrics.observe_failure("fatal")
            log.error("block %d failed: %s", head.number, exc)
            return
        if report is not None:
            self.metrics.observe_tick(report, time.perf_counter() - started, self.clock())
