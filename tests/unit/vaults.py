"""A v2 ``VaultState`` for unit tests: every field explicit, overridable by keyword."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from keeper.core.types import (
    WAD,
    Guards,
    OptionLeg,
    OracleRound,
    PolicyKind,
    VaultParams,
    VaultState,
)

NOW = 1_800_000_000
ANSWER = 3000 * 10**8  # $3,000 with 8 oracle decimals
USDC = 10**6

PARAMS = VaultParams(
    implied_vol_wad=8 * WAD // 10,
    risk_free_rate_wad=0,
    target_delta_wad=0,
    band_floor_wad=WAD // 10,
    hard_limit_wad=3 * WAD,
    risk_aversion_wad=10**14,
    policy=PolicyKind.GAS_ADJUSTED_BAND,
    policy_param=0,
)
GUARDS = Guards(
    max_slippage_bps=100,
    notional_cap=1_000_000 * USDC,
    loss_budget=10_000 * USDC,
    window_seconds=3600,
    max_trade_notional=500_000 * USDC,
    corrective_reserve_bps=2_000,
    max_overshoot_wad=WAD // 10,
    oracle_heartbeat=3600,
)


def vault_state(
    address: str = "0x" + "0a" * 20,
    params: VaultParams = PARAMS,
    guards: Guards = GUARDS,
    **fields: Any,
) -> VaultState:
    """A healthy vault: 100 WETH and 1M USDC, full buckets, a fresh $3,000 round."""
    base = VaultState(
        address=address,
        quote_balance=1_000_000 * USDC,
        underlying_balance=100 * WAD,
        quote_decimals=6,
        underlying_decimals=18,
        params=params,
        guards=guards,
        book=(OptionLeg(3000 * 10**8, NOW + 30 * 86_400, -10 * WAD, True),),
        oracle=OracleRound(7, ANSWER, NOW - 60, 8),
        paused=False,
        state_nonce=5,
        request_nonce=0,
        params_version=0,
        last_rebalance_at=NOW - 3600,
        notional_available=guards.notional_cap,
        loss_available=guards.loss_budget,
    )
    return replace(base, **fields)
