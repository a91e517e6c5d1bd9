"""Rebalances through the real Uniswap V3 SwapRouter and pools, and the guards around them."""

from __future__ import annotations

from typing import Any

import ape
from contract_helpers import (
    ORACLE,
    PRICE,
    USDC,
    WAD,
    World,
    deadline,
    error_data,
    exact_input_single,
    oracle_bound,
    refresh_oracle,
)


def quote(world: World, token_in: Any, token_out: Any, amount: int, fee: int) -> int:
    return int(world.quoter.quoteExactInputSingle.call((token_in, token_out, amount, fee, 0))[0])


def test_sell_through_real_pool_moves_balances_by_traded_amounts(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    refresh_oracle(world, deployer)
    amount = 2 * WAD
    expected_out = quote(world, world.weth, world.usdc, amount, 500)
    weth_before, usdc_before = world.weth.balanceOf(vault), world.usdc.balanceOf(vault)
    data = exact_input_single(world, world.weth, world.usdc, 500, vault, amount)

    receipt = vault.rebalance(True, amount, 0, world.router, data, deadline(), sender=keeper)

    (event,) = receipt.decode_logs(vault.Rebalanced)
    assert event.caller == keeper.address
    assert bool(event.sellUnderlying) is True
    assert event.amountIn == amount
    assert event.router == world.router.address
    assert event.amountOut == expected_out  # what the real pool pays for 2 WETH
    assert weth_before - world.weth.balanceOf(vault) == amount
    assert world.usdc.balanceOf(vault) - usdc_before == event.amountOut
    assert event.amountOut >= oracle_bound(amount)
    assert world.weth.allowance(vault, world.router) == 0
    state = vault.getState()
    assert state.lastRebalanceAt == receipt.timestamp
    assert state.windowNotionalUsed == amount * PRICE * USDC // WAD
    assert state.windowStart == receipt.timestamp
    print(f"\ngas: rebalance via SwapRouter exactInputSingle (sell 2 WETH) = {receipt.gas_used}")


def test_buy_through_real_pool(world: World, keeper: Any, deployer: Any) -> None:
    vault = world.vaults["short-puts"]
    refresh_oracle(world, deployer)
    amount = 6000 * USDC
    expected_out = quote(world, world.usdc, world.weth, amount, 3000)
    weth_before, usdc_before = world.weth.balanceOf(vault), world.usdc.balanceOf(vault)
    data = exact_input_single(world, world.usdc, world.weth, 3000, vault, amount)

    receipt = vault.rebalance(False, amount, 0, world.router, data, deadline(), sender=keeper)

    (event,) = receipt.decode_logs(vault.Rebalanced)
    assert bool(event.sellUnderlying) is False
    assert event.amountOut == expected_out
    assert usdc_before - world.usdc.balanceOf(vault) == amount
    assert world.weth.balanceOf(vault) - weth_before == expected_out
    assert expected_out >= 2 * WAD * 99 // 100  # the oracle bound for 6000 USDC at 3000
    assert world.usdc.allowance(vault, world.router) == 0
    print(f"\ngas: rebalance via SwapRouter exactInputSingle (buy) = {receipt.gas_used}")


def test_calldata_paying_someone_else_reverts(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    refresh_oracle(world, deployer)
    data = exact_input_single(world, world.weth, world.usdc, 500, keeper, WAD)
    with ape.reverts(vault.InsufficientOutput, received=0, required=oracle_bound(WAD)):
        vault.rebalance(True, WAD, 0, world.router, data, deadline(), sender=keeper)


def test_selling_below_the_oracle_bound_reverts(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    # The oracle moves 5% above the pool: the pool's price is now below the 1% bound.
    answer = 3150 * ORACLE
    refresh_oracle(world, deployer, answer)
    pool_out = quote(world, world.weth, world.usdc, WAD, 500)
    bound = oracle_bound(WAD, answer)
    assert pool_out < bound
    data = exact_input_single(world, world.weth, world.usdc, 500, vault, WAD)
    with ape.reverts(vault.InsufficientOutput, received=pool_out, required=bound):
        vault.rebalance(True, WAD, 0, world.router, data, deadline(), sender=keeper)


def test_keeper_min_out_above_the_bound_is_enforced(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    refresh_oracle(world, deployer)
    pool_out = quote(world, world.weth, world.usdc, WAD, 500)
    data = exact_input_single(world, world.weth, world.usdc, 500, vault, WAD)
    with ape.reverts(vault.InsufficientOutput, received=pool_out, required=pool_out + 1):
        vault.rebalance(True, WAD, pool_out + 1, world.router, data, deadline(), sender=keeper)


def test_router_not_allowlisted_reverts(world: World, vault: Any, keeper: Any) -> None:
    for router in (world.npm, world.quoter, world.usdc):
        with ape.reverts(vault.RouterNotAllowed, router=router.address):
            vault.rebalance(True, WAD, 0, router, b"", deadline(), sender=keeper)


def test_router_removed_from_allowlist_reverts(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    receipt = vault.setRouter(world.router, False, sender=deployer)
    assert [(e.router, e.allowed) for e in receipt.decode_logs(vault.RouterSet)] == [
        (world.router.address, False)
    ]
    data = exact_input_single(world, world.weth, world.usdc, 500, vault, WAD)
    with ape.reverts(vault.RouterNotAllowed):
        vault.rebalance(True, WAD, 0, world.router, data, deadline(), sender=keeper)


def test_expired_deadline_reverts(world: World, vault: Any, keeper: Any, deployer: Any) -> None:
    refresh_oracle(world, deployer)
    data = exact_input_single(world, world.weth, world.usdc, 500, vault, WAD)
    past = int(ape.chain.blocks.head.timestamp) - 1
    with ape.reverts(vault.DeadlineExpired, deadline=past):
        vault.rebalance(True, WAD, 0, world.router, data, past, sender=keeper)


def test_stale_oracle_reverts(world: World, vault: Any, keeper: Any, deployer: Any) -> None:
    updated = int(ape.chain.blocks.head.timestamp) - 3601
    world.feed.setRound(50, PRICE * ORACLE, updated, sender=deployer)
    data = exact_input_single(world, world.weth, world.usdc, 500, vault, WAD)
    with ape.reverts(vault.OracleStale, updatedAt=updated, heartbeat=3600):
        vault.rebalance(True, WAD, 0, world.router, data, deadline(), sender=keeper)


def test_time_makes_the_oracle_stale(world: World, vault: Any, keeper: Any, deployer: Any) -> None:
    refresh_oracle(world, deployer)
    ape.chain.pending_timestamp += 3601
    data = exact_input_single(world, world.weth, world.usdc, 500, vault, WAD)
    with ape.reverts(vault.OracleStale):
        vault.rebalance(True, WAD, 0, world.router, data, deadline(), sender=keeper)


def test_non_positive_oracle_reverts(world: World, vault: Any, keeper: Any, deployer: Any) -> None:
    data = exact_input_single(world, world.weth, world.usdc, 500, vault, WAD)
    for answer in (0, -1):
        refresh_oracle(world, deployer, answer)
        with ape.reverts(vault.OracleNonPositive, answer=answer):
            vault.rebalance(True, WAD, 0, world.router, data, deadline(), sender=keeper)


def test_broken_feed_reverts_rebalance_but_not_get_state(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    world.feed.setBroken(True, sender=deployer)
    state = vault.getState()
    assert state.oracle.ok is False
    assert state.oracle.answer == 0
    assert state.underlyingBalance == world.weth.balanceOf(vault)
    data = exact_input_single(world, world.weth, world.usdc, 500, vault, WAD)
    with ape.reverts(vault.OracleCallFailed, feed=world.feed.address):
        vault.rebalance(True, WAD, 0, world.router, data, deadline(), sender=keeper)


def test_zero_and_huge_amounts_revert(world: World, vault: Any, keeper: Any) -> None:
    with ape.reverts(vault.ZeroAmount):
        vault.rebalance(True, 0, 0, world.router, b"", deadline(), sender=keeper)
    with ape.reverts(vault.AmountTooLarge):
        vault.rebalance(True, 2**200, 0, world.router, b"", deadline(), sender=keeper)


def test_router_revert_is_reported(world: World, vault: Any, keeper: Any, deployer: Any) -> None:
    refresh_oracle(world, deployer)
    # The swap's own deadline is in the past: the SwapRouter reverts with 'Transaction too old'.
    params = (world.weth, world.usdc, 500, vault, 1, WAD, 0, 0)
    data = bytes(world.router.exactInputSingle.encode_input(params))
    reason = error_data("Error(string)", ["string"], ["Transaction too old"])
    with ape.reverts(vault.SwapFailed, reason=reason):
        vault.rebalance(True, WAD, 0, world.router, data, deadline(), sender=keeper)


def test_notional_cap_holds_and_resets_after_the_window(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    params = list(vault.params())
    cap = 10_000 * USDC
    params[9] = cap  # notionalCapPerWindow
    vault.setParams(tuple(params), sender=deployer)
    refresh_oracle(world, deployer)
    amount = 2 * WAD  # 6000 USDC at the oracle
    notional = 6000 * USDC

    def sell() -> Any:
        data = exact_input_single(world, world.weth, world.usdc, 500, vault, amount)
        return vault.rebalance(True, amount, 0, world.router, data, deadline(), sender=keeper)

    first = sell()
    assert vault.windowNotionalUsed() == notional
    with ape.reverts(vault.NotionalCapExceeded, used=notional, requested=notional, cap=cap):
        sell()

    ape.chain.pending_timestamp = first.timestamp + 3600  # windowSeconds later
    refresh_oracle(world, deployer)
    second = sell()
    state = vault.getState()
    assert state.windowStart == second.timestamp
    assert state.windowNotionalUsed == notional


def test_pause_stops_rebalances(world: World, vault: Any, keeper: Any, deployer: Any) -> None:
    refresh_oracle(world, deployer)
    receipt = vault.pause(sender=deployer)
    assert [e.by for e in receipt.decode_logs(vault.Paused)] == [deployer.address]
    assert vault.getState().paused is True
    data = exact_input_single(world, world.weth, world.usdc, 500, vault, WAD)
    with ape.reverts(vault.VaultPaused):
        vault.rebalance(True, WAD, 0, world.router, data, deadline(), sender=keeper)
    with ape.reverts(vault.VaultPaused):
        vault.pause(sender=deployer)
    receipt = vault.unpause(sender=deployer)
    assert [e.by for e in receipt.decode_logs(vault.Unpaused)] == [deployer.address]
    data = exact_input_single(world, world.weth, world.usdc, 500, vault, WAD)
    vault.rebalance(True, WAD, 0, world.router, data, deadline(), sender=keeper)
    with ape.reverts(vault.VaultNotPaused):
        vault.unpause(sender=deployer)


def test_removed_keeper_cannot_rebalance(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    receipt = vault.setKeeper(keeper, False, sender=deployer)
    assert [(e.who, e.allowed) for e in receipt.decode_logs(vault.KeeperSet)] == [
        (keeper.address, False)
    ]
    with ape.reverts(vault.NotKeeper, caller=keeper.address):
        vault.rebalance(True, WAD, 0, world.router, b"", deadline(), sender=keeper)
