"""RebalanceBatcher: legs succeed or fail on their own; failures carry their revert data."""

from __future__ import annotations

from typing import Any

import ape
from contract_helpers import (
    USDC,
    WAD,
    World,
    deadline,
    error_data,
    exact_input_single,
    oracle_bound,
    refresh_oracle,
)


def test_batch_with_a_failing_leg_executes_the_others(
    world: World, keeper: Any, deployer: Any
) -> None:
    refresh_oracle(world, deployer)
    calls, puts, straddle = (
        world.vaults[n] for n in ("short-calls", "short-puts", "short-straddle")
    )
    legs = [
        (
            calls,
            True,
            WAD,
            0,
            world.router,
            exact_input_single(world, world.weth, world.usdc, 500, calls, WAD),
        ),
        # Hostile calldata: the USDC goes to the keeper, so the vault receives nothing.
        (
            puts,
            True,
            WAD,
            0,
            world.router,
            exact_input_single(world, world.weth, world.usdc, 500, keeper, WAD),
        ),
        (
            straddle,
            False,
            3000 * USDC,
            0,
            world.router,
            exact_input_single(world, world.usdc, world.weth, 3000, straddle, 3000 * USDC),
        ),
    ]
    puts_weth = world.weth.balanceOf(puts)
    calls_weth = world.weth.balanceOf(calls)

    receipt = world.batcher.execute(legs, deadline(), sender=keeper)

    executed = receipt.decode_logs(world.batcher.LegExecuted)
    failed = receipt.decode_logs(world.batcher.LegFailed)
    assert [(e.index, e.vault) for e in executed] == [(0, calls.address), (2, straddle.address)]
    assert [(e.index, e.vault) for e in failed] == [(1, puts.address)]
    expected_reason = error_data(
        "InsufficientOutput(uint256,uint256)", ["uint256", "uint256"], [0, oracle_bound(WAD)]
    )
    assert bytes(failed[0].reason) == expected_reason
    rebalanced = receipt.decode_logs(calls.Rebalanced)
    assert [e.amountOut for e in rebalanced] == [e.amountOut for e in executed]
    assert all(e.caller == world.batcher.address for e in rebalanced)
    assert world.weth.balanceOf(puts) == puts_weth  # the failed leg left no trace
    assert calls_weth - world.weth.balanceOf(calls) == WAD
    print(f"\ngas: 3-leg batch (2 swaps via SwapRouter + 1 failing leg) = {receipt.gas_used}")


def test_batch_of_three_successful_legs(world: World, keeper: Any, deployer: Any) -> None:
    refresh_oracle(world, deployer)
    legs = [
        (
            v,
            True,
            WAD,
            0,
            world.router,
            exact_input_single(world, world.weth, world.usdc, 500, v, WAD),
        )
        for v in world.vaults.values()
    ]
    receipt = world.batcher.execute(legs, deadline(), sender=keeper)
    assert [e.index for e in receipt.decode_logs(world.batcher.LegExecuted)] == [0, 1, 2]
    assert receipt.decode_logs(world.batcher.LegFailed) == []
    print(f"\ngas: 3-leg batch (3 swaps via SwapRouter) = {receipt.gas_used}")


def test_leg_on_an_address_without_code_fails_alone(
    world: World, keeper: Any, deployer: Any, stranger: Any
) -> None:
    refresh_oracle(world, deployer)
    vault = world.vaults["short-calls"]
    legs = [
        (stranger, True, WAD, 0, world.router, b""),
        (
            vault,
            True,
            WAD,
            0,
            world.router,
            exact_input_single(world, world.weth, world.usdc, 500, vault, WAD),
        ),
    ]
    receipt = world.batcher.execute(legs, deadline(), sender=keeper)
    (failed,) = receipt.decode_logs(world.batcher.LegFailed)
    assert failed.index == 0
    assert bytes(failed.reason) == error_data(
        "BadVaultResponse(address)", ["address"], [stranger.address]
    )
    assert [e.index for e in receipt.decode_logs(world.batcher.LegExecuted)] == [1]


def test_batch_deadline(world: World, keeper: Any) -> None:
    past = int(ape.chain.blocks.head.timestamp) - 1
    with ape.reverts(world.batcher.DeadlineExpired, deadline=past):
        world.batcher.execute([], past, sender=keeper)


def test_batcher_not_a_keeper_reports_not_keeper(world: World, keeper: Any, deployer: Any) -> None:
    vault = world.vaults["short-puts"]
    vault.setKeeper(world.batcher, False, sender=deployer)
    receipt = world.batcher.execute(
        [(vault, True, WAD, 0, world.router, b"")], deadline(), sender=keeper
    )
    (failed,) = receipt.decode_logs(world.batcher.LegFailed)
    assert bytes(failed.reason) == error_data(
        "NotKeeper(address)", ["address"], [world.batcher.address]
    )
