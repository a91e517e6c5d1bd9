"""VaultParams encoding (keeper.core.abi): the params tuple and the OptionsVault constructor."""

from __future__ import annotations

from eth_abi.abi import decode, encode

from keeper.core.abi import (
    VAULT_STATE_TYPE,
    decode_vault_state,
    encode_vault_constructor,
    vault_params_tuple,
)
from keeper.core.types import PolicyKind, VaultParams

VAULT = "0x322813Fd9A801c5507c9de605d63CEA4f2CE6c44"
GOVERNANCE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
USDC = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
WETH = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
FEED = "0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9"
WAD = 10**18

# Every field different, the signed ones negative, and the policy not the enum's 0.
PARAMS = VaultParams(
    implied_vol_wad=8 * WAD // 10,
    risk_free_rate_wad=-WAD // 100,
    target_delta_wad=-3 * WAD // 10,
    band_floor_wad=WAD // 20,
    hard_limit_wad=2 * WAD,
    risk_aversion_wad=WAD // 2,
    policy=PolicyKind.TIME_BASED,
    policy_param=3600,
    max_slippage_bps=75,
    notional_cap_per_window=1_000_000 * 10**6,
    window_seconds=86_400,
    oracle_heartbeat=3_700,
)
PARAMS_TYPE = (
    "(uint256,int256,int256,uint256,uint256,uint256,uint8,uint256,uint16,uint256,uint64,uint64)"
)


def fake_get_state(params_tuple: tuple[int, ...]) -> bytes:
    """``getState()`` return data around ``params_tuple``: balances, one leg, one round."""
    leg = (3200 * 10**8, 1_900_000_000, -5 * WAD, True)
    oracle_round = (7, 3000 * 10**8, 1_800_000_000, True)
    state = (1_000 * 10**6, 2 * WAD, params_tuple, [leg], oracle_round, 8, False, 4, 2, 0, 0, 0)
    return encode([VAULT_STATE_TYPE], [state])


def test_params_tuple_round_trips_through_get_state() -> None:
    decoded = decode_vault_state(VAULT, fake_get_state(vault_params_tuple(PARAMS)))
    assert decoded.params == PARAMS
    assert decoded.book[0].size == -5 * WAD  # the fields around the params stay in place
    assert decoded.oracle.round_id == 7


def test_params_tuple_is_in_struct_order() -> None:
    assert vault_params_tuple(PARAMS) == (
        8 * WAD // 10,
        -WAD // 100,
        -3 * WAD // 10,
        WAD // 20,
        2 * WAD,
        WAD // 2,
        2,
        3600,
        75,
        1_000_000 * 10**6,
        86_400,
        3_700,
    )


def test_constructor_arguments_decode_to_the_inputs() -> None:
    data = encode_vault_constructor(GOVERNANCE.lower(), USDC, WETH, FEED, PARAMS)
    gov, quote, underlying, feed, params = decode(
        ["address", "address", "address", "address", PARAMS_TYPE], data
    )
    assert (gov, quote, underlying, feed) == (
        GOVERNANCE.lower(),
        USDC.lower(),
        WETH.lower(),
        FEED.lower(),
    )
    assert params == vault_params_tuple(PARAMS)
    assert len(data) == 32 * (4 + 12)  # static arguments only: one word each


def test_chunks_respect_both_the_call_count_and_the_gas_budget() -> None:
    from keeper.core.abi import get_state_gas, plan_chunks

    assert plan_chunks([1] * 5, max_calls=2, gas_budget=100) == [
        range(0, 2),
        range(2, 4),
        range(4, 5),
    ]
    assert plan_chunks([60, 50, 40, 10], max_calls=10, gas_budget=100) == [range(0, 1), range(1, 4)]
    assert plan_chunks([500, 1], max_calls=10, gas_budget=100) == [range(0, 1), range(1, 2)]
    assert plan_chunks([], max_calls=10, gas_budget=100) == []
    # 1000 two-leg vaults under a 20M budget: about 250 per chunk
    chunks = plan_chunks([get_state_gas(2)] * 1000, max_calls=5000, gas_budget=20_000_000)
    assert all(sum(get_state_gas(2) for _ in c) <= 20_000_000 for c in chunks)
    assert [i for c in chunks for i in c] == list(range(1000))
