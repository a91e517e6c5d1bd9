"""Wiring the sending side from the settings: key, routes, fee policy, confirmer."""

from __future__ import annotations

import aiohttp
from eth_utils.address import to_checksum_address

from keeper.act.actor import ActConfig, RebalanceActor
from keeper.act.redecide import batch_check
from keeper.chain.aggregator import ZeroExClient
from keeper.chain.eth import RpcChain
from keeper.chain.routing import Router
from keeper.chain.rpc import RpcBroadcaster, RpcClient, RpcConfig
from keeper.chain.uniswap import UniswapDirect
from keeper.config import GWEI, Addresses, Settings
from keeper.core.fees import FeePolicy
from keeper.runner import check_chain
from keeper.store import Store
from keeper.tx import ConfirmConfig, Confirmer, Lifecycle, LifecycleConfig
from keeper.tx.nonces import NonceManager
from keeper.tx.sender import GuardedRelay, Sender, SenderConfig
from keeper.tx.signer import load_signer


async def build_actor(settings: Settings, store: Store, rpc: RpcClient) -> RebalanceActor:
    """Wire the sending side from the settings (the key, the routes, the fee policy)."""
    addresses = Addresses.resolve(settings)
    account = load_signer(settings)
    w3 = RpcChain(rpc)  # every request on the keeper's own JSON-RPC client (keeper.chain.eth)
    fees = FeePolicy(
        priority_floor_wei=int(settings.priority_fee_gwei * GWEI),
        priority_cap_wei=int(settings.max_priority_fee_gwei * GWEI),
        max_fee_cap_wei=settings.max_fee_wei,
        emergency_max_fee_cap_wei=settings.emergency_max_fee_wei,
    )
    chain_id = await check_chain(settings, rpc, store)  # before the journal is reconciled
    nonces = NonceManager(w3, store, account.address)
    private, owned = None, []
    if settings.private_rpc_url:
        relay = RpcClient(
            RpcConfig(
                urls=(settings.private_rpc_url,),
                timeout_seconds=settings.private_rpc_timeout_seconds,
            )
        )
        owned.append(relay)
        private = GuardedRelay(
            RpcBroadcaster(relay, "private"),
            timeout_seconds=settings.private_rpc_timeout_seconds,
            cooldown_seconds=settings.private_rpc_cooldown_seconds,
        )
    sender = Sender(
        w3,
        account,
        store,
        nonces,
        SenderConfig(fees=fees, low_balance_wei=settings.low_balance_wei),
        private=private,
        public=RpcBroadcaster(rpc, "public", fence=store.check_lease),
    )
    aggregator, session = None, None
    if settings.aggregator_url:
        session = aiohttp.ClientSession()
        aggregator = ZeroExClient(
            session,
            settings.aggregator_url,
            settings.aggregator_api_key,
            chain_id,
            settings.aggregator_timeout_seconds,
        )
    direct = UniswapDirect(
        w3,
        addresses.quoter,
        addresses.swap_router,
        multicall=addresses.multicall,
        gas_cap=settings.simulation_gas_cap,
    )
    router = Router(direct, aggregator, race_seconds=settings.quote_race_seconds)
    config = ActConfig(
        keeper=account.address,
        settlement=to_checksum_address(addresses.settlement),
        weth=to_checksum_address(addresses.weth),
        usdc=to_checksum_address(addresses.usdc),
        routers=frozenset({to_checksum_address(addresses.swap_router)}),
        deadline_seconds=settings.deadline_seconds,
        cost_bps=round(settings.dex_fee_bps),
        net_slippage_bps=settings.net_slippage_bps,
        max_fee_cap_wei=settings.max_fee_wei,
        simulation_gas_cap=settings.simulation_gas_cap,
        block_gas_share=settings.block_gas_share,
    )
    confirmer = Confirmer(
        w3, sender, store, ConfirmConfig(stuck_after_blocks=settings.stuck_after_blocks)
    )
    lifecycle = Lifecycle(
        sender,
        confirmer,
        store,
        LifecycleConfig(revert_backoff_blocks=settings.revert_backoff_blocks),
    )
    actor = RebalanceActor(
        w3,
        config,
        store,
        router,
        lifecycle,
        batch_check(w3, account.address),
        session,
        owned=tuple(owned),
        batching=rpc.batching,
    )
    await actor.start()
    return actor
