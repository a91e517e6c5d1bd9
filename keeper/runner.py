"""The long-lived service: wire the settings into the pipeline and run it on every new head."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from web3 import AsyncHTTPProvider, AsyncWeb3

from keeper import monitor
from keeper.chain.blocks import ChainFollower, HeadSource, LatestHead, block_ref
from keeper.chain.reader import StateReader
from keeper.chain.retry import READ_POLICY
from keeper.config import GWEI, Addresses, Settings
from keeper.core.decide import CostConfig
from keeper.core.types import BlockRef
from keeper.errors import ConfigError, FatalError, RetryableError
from keeper.metrics import Metrics
from keeper.pipeline import Actor, Pipeline
from keeper.store import Store
from keeper.store.records import IN_FLIGHT_STATES

log = logging.getLogger("keeper.runner")


def make_web3(settings: Settings) -> AsyncWeb3[Any]:
    provider = AsyncHTTPProvider(
        settings.rpc_url,
        request_kwargs={"timeout": settings.rpc_timeout_seconds},
        exception_retry_configuration=None,  # keeper.chain.retry is the one retry policy
    )
    return AsyncWeb3(provider)


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
    )


async def check_chain(settings: Settings, w3: AsyncWeb3[Any], store: Store) -> int:
    """The node's chain id, once it is the configured one and the database's (ConfigError)."""
    chain_id = int(
        await READ_POLICY.call(lambda: w3.eth.chain_id, f"eth_chainId at {settings.rpc_url}")
    )
    expected = settings.chain_id or Addresses.resolve(settings).chain_id
    if expected is not None and chain_id != expected:
        raise ConfigError(f"KEEPER_RPC_URL: node is on chain {chain_id}, expected {expected}")
    store.bind_chain(chain_id)
    return chain_id


@dataclass
class Keeper:
    settings: Settings
    w3: AsyncWeb3[Any]
    store: Store
    pipeline: Pipeline
    clock: Callable[[], float] = time.time
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = Metrics(started_at=self.clock())

    @classmethod
    async def build(cls, settings: Settings, store: Store, actor: Actor | None = None) -> Keeper:
        addresses = Addresses.resolve(settings)
        w3 = make_web3(settings)
        await check_chain(settings, w3, store)

        async def fetch_block(number: int) -> BlockRef:
            block = await READ_POLICY.call(lambda: w3.eth.get_block(number), f"block {number}")
            return block_ref(block)

        follower = ChainFollower(
            fetch_block,
            history=settings.reorg_history_blocks,
            max_backfill=settings.max_backfill_blocks,
            known=store.recent_blocks(settings.reorg_history_blocks),
        )
        reader = StateReader(
            w3,
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
        return cls(settings, w3, store, pipeline)

    async def close(self) -> None:
        """Release the node connections (the HTTP session of this event loop)."""
        await self.w3.provider.disconnect()
        if self.pipeline.actor is not None:
            await self.pipeline.actor.close()

    async def run(self, max_blocks: int | None = None) -> None:
        """Process new heads until cancelled (or ``max_blocks`` heads, for tests and demos)."""
        slot = LatestHead()
        source = HeadSource(
            self.w3,
            self.settings.ws_url,
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
