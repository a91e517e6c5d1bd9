"""Routers that misbehave: re-entry, short payment, over-pulling; and a token with no bool."""

from __future__ import annotations

from typing import Any

import ape
import pytest
from contract_helpers import (
    PRICE,
    USDC,
    WAD,
    World,
    deadline,
    error_data,
    oracle_bound,
    refresh_oracle,
)

REENTRANCY = error_data("Reentrancy()", [], [])


@pytest.fixture
def mock_router(world: World, vault: Any, deployer: Any, project: Any) -> Any:
    """A MockRouter allowlisted on the vault and holding USDC and WETH to pay out."""
    router = deployer.deploy(project.MockRouter)
    vault.setRouter(router, True, sender=deployer)
    world.usdc.mint(router, 1_000_000 * USDC, sender=deployer)
    world.weth.deposit(value=100 * WAD, sender=deployer)
    world.weth.transfer(router, 100 * WAD, sender=deployer)
    refresh_oracle(world, deployer)
    return router


@pytest.fixture
def reentrant_router(world: World, vault: Any, deployer: Any, project: Any) -> Any:
    """The worst case: the hostile router is allowlisted AND a keeper."""
    router = deployer.deploy(project.ReentrantRouter)
    vault.setRouter(router, True, sender=deployer)
    vault.setKeeper(router, True, sender=deployer)
    world.usdc.mint(router, 1_000_000 * USDC, sender=deployer)
    refresh_oracle(world, deployer)
    return router


def swap_data(router: Any, token_in: Any, token_out: Any, pull: int, pay: int, to: Any) -> bytes:
    return bytes(router.swap.encode_input(token_in, token_out, pull, pay, to))


def test_reentering_router_fails(
    world: World, vault: Any, keeper: Any, reentrant_router: Any
) -> None:
    pay = PRICE * USDC
    data = bytes(reentrant_router.swap.encode_input(vault, world.weth, world.usdc, WAD, pay, False))
    with ape.reverts(vault.SwapFailed, reason=REENTRANCY):
        vault.rebalance(True, WAD, 0, reentrant_router, data, deadline(), sender=keeper)


def test_reentry_is_refused_even_when_the_router_swallows_it(
    world: World, vault: Any, keeper: Any, reentrant_router: Any
) -> None:
    pay = PRICE * USDC
    data = bytes(reentrant_router.swap.encode_input(vault, world.weth, world.usdc, WAD, pay, True))
    weth_before = world.weth.balanceOf(vault)
    receipt = vault.rebalance(True, WAD, 0, reentrant_router, data, deadline(), sender=keeper)
    assert bytes(reentrant_router.lastInnerRevert()) == REENTRANCY
    assert reentrant_router.innerSucceeded() is False
    assert len(receipt.decode_logs(vault.Rebalanced)) == 1  # only the outer swap happened
    assert weth_before - world.weth.balanceOf(vault) == WAD


def test_router_paying_less_than_the_oracle_bound_reverts(
    world: World, vault: Any, keeper: Any, mock_router: Any
) -> None:
    bound = oracle_bound(WAD)
    data = swap_data(mock_router, world.weth, world.usdc, WAD, bound - 1, vault)
    with ape.reverts(vault.InsufficientOutput, received=bound - 1, required=bound):
        vault.rebalance(True, WAD, 0, mock_router, data, deadline(), sender=keeper)
    # Exactly the bound is enough.
    data = swap_data(mock_router, world.weth, world.usdc, WAD, bound, vault)
    receipt = vault.rebalance(True, WAD, 0, mock_router, data, deadline(), sender=keeper)
    (event,) = receipt.decode_logs(vault.Rebalanced)
    assert event.amountOut == bound


def test_router_pulling_more_than_approved_fails(
    world: World, vault: Any, keeper: Any, mock_router: Any
) -> None:
    data = swap_data(mock_router, world.weth, world.usdc, WAD + 1, PRICE * USDC, vault)
    with ape.reverts(vault.SwapFailed):
        vault.rebalance(True, WAD, 0, mock_router, data, deadline(), sender=keeper)


def test_unused_allowance_is_reset_after_the_swap(
    world: World, vault: Any, keeper: Any, mock_router: Any
) -> None:
    # The router takes half of what it was approved for and still pays the full bound.
    data = swap_data(mock_router, world.weth, world.usdc, WAD // 2, oracle_bound(WAD), vault)
    weth_before = world.weth.balanceOf(vault)
    receipt = vault.rebalance(True, WAD, 0, mock_router, data, deadline(), sender=keeper)
    (event,) = receipt.decode_logs(vault.Rebalanced)
    assert event.amountIn == WAD // 2  # what actually left the vault
    assert weth_before - world.weth.balanceOf(vault) == WAD // 2
    assert world.weth.allowance(vault, mock_router) == 0


def test_token_without_bool_returns_works(
    world: World, deployer: Any, keeper: Any, project: Any, vault: Any
) -> None:
    usdt = deployer.deploy(project.NoBoolERC20, "Tether USD", "USDT", 6)
    no_bool_vault = deployer.deploy(
        project.OptionsVault, deployer, usdt, world.weth, world.feed, tuple(vault.params())
    )
    router = deployer.deploy(project.MockRouter)
    no_bool_vault.setKeeper(keeper, True, sender=deployer)
    no_bool_vault.setRouter(router, True, sender=deployer)
    world.weth.deposit(value=10 * WAD, sender=deployer)
    world.weth.transfer(router, 10 * WAD, sender=deployer)
    usdt.mint(deployer, 100_000 * USDC, sender=deployer)
    refresh_oracle(world, deployer)

    # deposit (safeTransferFrom) and withdraw (safeTransfer) with the no-bool token
    usdt.approve(no_bool_vault, 50_000 * USDC, sender=deployer)
    no_bool_vault.deposit(usdt, 50_000 * USDC, sender=deployer)
    no_bool_vault.withdraw(usdt, deployer, 10_000 * USDC, sender=deployer)
    assert usdt.balanceOf(no_bool_vault) == 40_000 * USDC

    # Two buys (safeApprove). The router takes only half of the approval each time; without
    # the reset to 0 the second approve would revert (this token refuses non-zero to non-zero).
    amount = 3000 * USDC
    for _ in range(2):
        data = swap_data(router, usdt, world.weth, amount // 2, WAD, no_bool_vault)
        no_bool_vault.rebalance(False, amount, 0, router, data, deadline(), sender=keeper)
        assert usdt.allowance(no_bool_vault, router) == 0
    assert usdt.balanceOf(no_bool_vault) == 40_000 * USDC - amount
    assert world.weth.balanceOf(no_bool_vault) == 2 * WAD


def test_token_call_to_non_contract_fails(world: World, vault: Any, deployer: Any) -> None:
    with ape.reverts(vault.TokenCallFailed):
        vault.withdraw(deployer, deployer, 1, sender=deployer)
