"""Rebalances through the real Uniswap V3 SwapRouter and pools, and the checks around them."""

from __future__ import annotations

from typing import Any

import ape
import pytest
from contract_helpers import (
    ORACLE,
    PRICE,
    USDC,
    WAD,
    World,
    error_data,
    exact_input_single,
    oracle_bound,
    refresh_oracle,
    set_deviation,
    trade,
)


def quote(world: World, token_in: Any, token_out: Any, amount: int, fee: int) -> int:
    return int(world.quoter.quoteExactInputSingle.call((token_in, token_out, amount, fee, 0))[0])


@pytest.fixture
def over_hedged(world: World, vault: Any, deployer: Any) -> Any:
    """The short-calls vault holding 3 WETH more than its target: it should sell."""
    set_deviation(vault, deployer, 3 * WAD)
    refresh_oracle(world, deployer)
    return vault


def sell_data(world: World, vault: Any, amount: int, fee: int = 500) -> bytes:
    return exact_input_single(world, world.weth, world.usdc, fee, vault, amount)


def test_sell_through_real_pool_moves_balances_by_traded_amounts(
    world: World, over_hedged: Any, keeper: Any
) -> None:
    vault = over_hedged
    amount = 2 * WAD
    expected_out = quote(world, world.weth, world.usdc, amount, 500)
    weth_before, usdc_before = world.weth.balanceOf(vault), world.usdc.balanceOf(vault)
    nonce = vault.stateNonce()
    dev_before = vault.deviationWad()

    receipt = vault.rebalance(
        trade(vault, True, amount), world.router, sell_data(world, vault, amount), sender=keeper
    )

    (event,) = receipt.decode_logs(vault.Traded)
    assert (event.keeper, event.via, event.stateNonce) == (
        keeper.address,
        world.router.address,
        nonce + 1,
    )
    assert bool(event.sellUnderlying) is True
    assert event.amountIn == amount
    assert event.amountOut == expected_out  # what the real pool pays for 2 WETH
    assert event.loss == amount * PRICE * USDC // WAD - expected_out  # fee and price impact
    assert weth_before - world.weth.balanceOf(vault) == amount
    assert world.usdc.balanceOf(vault) - usdc_before == event.amountOut
    assert event.amountOut >= oracle_bound(amount)
    assert world.weth.allowance(vault, world.router) == 0
    assert vault.stateNonce() == nonce + 1
    assert abs(vault.deviationWad() - (dev_before - amount)) < WAD // 10**5
    print(f"\ngas: rebalance via SwapRouter exactInputSingle (sell 2 WETH) = {receipt.gas_used}")


def test_buy_through_real_pool(world: World, keeper: Any, deployer: Any) -> None:
    vault = world.vaults["short-puts"]
    set_deviation(vault, deployer, -3 * WAD)
    refresh_oracle(world, deployer)
    amount = 6000 * USDC
    expected_out = quote(world, world.usdc, world.weth, amount, 3000)
    weth_before, usdc_before = world.weth.balanceOf(vault), world.usdc.balanceOf(vault)
    data = exact_input_single(world, world.usdc, world.weth, 3000, vault, amount)

    receipt = vault.rebalance(trade(vault, False, amount), world.router, data, sender=keeper)

    (event,) = receipt.decode_logs(vault.Traded)
    assert bool(event.sellUnderlying) is False
    assert event.amountOut == expected_out
    assert usdc_before - world.usdc.balanceOf(vault) == amount
    assert world.weth.balanceOf(vault) - weth_before == expected_out
    assert expected_out >= 2 * WAD * 99 // 100  # the oracle bound for 6000 USDC at 3000
    assert world.usdc.allowance(vault, world.router) == 0
    print(f"\ngas: rebalance via SwapRouter exactInputSingle (buy) = {receipt.gas_used}")


def test_calldata_paying_someone_else_reverts(world: World, over_hedged: Any, keeper: Any) -> None:
    vault = over_hedged
    data = exact_input_single(world, world.weth, world.usdc, 500, keeper, WAD)
    with ape.reverts(vault.InsufficientOutput, received=0, required=oracle_bound(WAD)):
        vault.rebalance(trade(vault, True, WAD), world.router, data, sender=keeper)


def test_selling_below_the_oracle_bound_reverts(
    world: World, over_hedged: Any, keeper: Any, deployer: Any
) -> None:
    vault = over_hedged
    # The oracle moves 5% above the pool: the pool's price is now below the 1% bound.
    answer = 3150 * ORACLE
    refresh_oracle(world, deployer, answer)
    set_deviation(vault, deployer, 3 * WAD)
    pool_out = quote(world, world.weth, world.usdc, WAD, 500)
    bound = oracle_bound(WAD, answer)
    assert pool_out < bound
    with ape.reverts(vault.InsufficientOutput, received=pool_out, required=bound):
        vault.rebalance(
            trade(vault, True, WAD), world.router, sell_data(world, vault, WAD), sender=keeper
        )


def test_keeper_min_out_above_the_bound_is_enforced(
    world: World, over_hedged: Any, keeper: Any
) -> None:
    vault = over_hedged
    pool_out = quote(world, world.weth, world.usdc, WAD, 500)
    data = sell_data(world, vault, WAD)
    with ape.reverts(vault.InsufficientOutput, received=pool_out, required=pool_out + 1):
        vault.rebalance(trade(vault, True, WAD, pool_out + 1), world.router, data, sender=keeper)


def test_router_not_allowlisted_reverts(world: World, vault: Any, keeper: Any) -> None:
    for router in (world.npm, world.quoter, world.usdc):
        with ape.reverts(vault.RouterNotAllowed, router=router.address):
            vault.rebalance(trade(vault, True, WAD), router, b"", sender=keeper)


def test_expired_deadline_reverts(world: World, over_hedged: Any, keeper: Any) -> None:
    vault = over_hedged
    past = int(ape.chain.blocks.head.timestamp) - 1
    with ape.reverts(vault.DeadlineExpired, deadline=past):
        vault.rebalance(
            trade(vault, True, WAD, until=past),
            world.router,
            sell_data(world, vault, WAD),
            sender=keeper,
        )


def test_stale_oracle_reverts(world: World, over_hedged: Any, keeper: Any, deployer: Any) -> None:
    vault = over_hedged
    updated = int(ape.chain.blocks.head.timestamp) - 3601
    world.feed.setRound(50, PRICE * ORACLE, updated, sender=deployer)
    with ape.reverts(vault.OracleStale, updatedAt=updated, heartbeat=3600):
        vault.rebalance(
            trade(vault, True, WAD), world.router, sell_data(world, vault, WAD), sender=keeper
        )


def test_future_dated_round_is_refused(
    world: World, over_hedged: Any, keeper: Any, deployer: Any
) -> None:
    """Attack: a round dated in the future would never go stale under `updatedAt + heartbeat
    < now`. The vault refuses it outright (and getState still reads it, ok)."""
    vault = over_hedged
    future = int(ape.chain.blocks.head.timestamp) + 10 * 86400
    world.feed.setRound(60, PRICE * ORACLE, future, sender=deployer)
    assert vault.getState().oracle.updatedAt == future
    with ape.reverts(vault.OracleFromFuture, updatedAt=future):
        vault.rebalance(
            trade(vault, True, WAD), world.router, sell_data(world, vault, WAD), sender=keeper
        )
    with ape.reverts(vault.OracleFromFuture):
        vault.optionsDeltaWad()


def test_non_positive_oracle_reverts(
    world: World, over_hedged: Any, keeper: Any, deployer: Any
) -> None:
    vault = over_hedged
    for answer in (0, -1):
        refresh_oracle(world, deployer, answer)
        with ape.reverts(vault.OracleNonPositive, answer=answer):
            vault.rebalance(
                trade(vault, True, WAD), world.router, sell_data(world, vault, WAD), sender=keeper
            )


def test_broken_feed_reverts_trades_but_not_get_state(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    world.feed.setBroken(True, sender=deployer)
    state = vault.getState()
    assert state.oracle.ok is False
    assert state.oracle.answer == 0
    assert state.underlyingBalance == world.weth.balanceOf(vault)
    with ape.reverts(vault.OracleCallFailed, feed=world.feed.address):
        vault.rebalance(
            trade(vault, True, WAD), world.router, sell_data(world, vault, WAD), sender=keeper
        )


def test_zero_and_huge_amounts_revert(world: World, vault: Any, keeper: Any) -> None:
    with ape.reverts(vault.ZeroAmount):
        vault.rebalance(trade(vault, True, 0), world.router, b"", sender=keeper)
    with ape.reverts(vault.AmountTooLarge):
        vault.rebalance(trade(vault, True, 2**200), world.router, b"", sender=keeper)


def test_router_revert_is_reported(world: World, over_hedged: Any, keeper: Any) -> None:
    vault = over_hedged
    # The swap's own deadline is in the past: the SwapRouter reverts with 'Transaction too old'.
    params = (world.weth, world.usdc, 500, vault, 1, WAD, 0, 0)
    data = bytes(world.router.exactInputSingle.encode_input(params))
    reason = error_data("Error(string)", ["string"], ["Transaction too old"])
    with ape.reverts(vault.SwapFailed, reason=reason):
        vault.rebalance(trade(vault, True, WAD), world.router, data, sender=keeper)


def test_trade_above_the_per_trade_cap_reverts(world: World, over_hedged: Any, keeper: Any) -> None:
    vault = over_hedged
    cap = int(vault.guards().maxTradeNotional)
    amount = cap * WAD // (PRICE * USDC) + WAD // 100  # just above the cap at the oracle
    notional = amount * PRICE * USDC // WAD
    with ape.reverts(vault.TradeTooLarge, notional=notional, max=cap):
        vault.rebalance(
            trade(vault, True, amount), world.router, sell_data(world, vault, amount), sender=keeper
        )
