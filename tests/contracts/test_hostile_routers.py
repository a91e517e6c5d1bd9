"""Routers that misbehave: re-entry, short payment, over-pulling, burning gas, revert bombs;
a token with no bool; allowances reset only when something is left."""

from __future__ import annotations

from typing import Any

import ape
import pytest
from contract_helpers import (
    PRICE,
    USDC,
    WAD,
    World,
    error_data,
    oracle_bound,
    refresh_oracle,
    set_deviation,
    trade,
)

REENTRANCY = error_data("ReentrancyGuardReentrantCall()", [], [])
TX_GAS = 5_000_000  # far above the router's cap: what the vault spends must not depend on it


@pytest.fixture
def over_hedged(world: World, vault: Any, deployer: Any) -> Any:
    set_deviation(vault, deployer, 3 * WAD)
    refresh_oracle(world, deployer)
    return vault


@pytest.fixture
def mock_router(world: World, over_hedged: Any, deployer: Any, project: Any) -> Any:
    """A MockRouter allowlisted on the vault and holding USDC and WETH to pay out."""
    router = deployer.deploy(project.MockRouter)
    over_hedged.setRouter(router, True, sender=deployer)
    world.usdc.mint(router, 1_000_000 * USDC, sender=deployer)
    world.weth.deposit(value=100 * WAD, sender=deployer)
    world.weth.transfer(router, 100 * WAD, sender=deployer)
    return router


@pytest.fixture
def hostile_router(over_hedged: Any, deployer: Any, project: Any) -> Any:
    router = deployer.deploy(project.HostileRouter)
    over_hedged.setRouter(router, True, sender=deployer)
    return router


@pytest.fixture
def reentrant_router(world: World, over_hedged: Any, deployer: Any, project: Any) -> Any:
    """The worst case: the hostile router is allowlisted AND a keeper."""
    router = deployer.deploy(project.ReentrantRouter)
    over_hedged.setRouter(router, True, sender=deployer)
    over_hedged.setKeeper(router, True, sender=deployer)
    world.usdc.mint(router, 1_000_000 * USDC, sender=deployer)
    return router


def swap_data(router: Any, token_in: Any, token_out: Any, pull: int, pay: int, to: Any) -> bytes:
    return bytes(router.swap.encode_input(token_in, token_out, pull, pay, to))


def reentry_data(world: World, router: Any, vault: Any, swallow: bool) -> bytes:
    inner = trade(vault, True, WAD, nonce=int(vault.stateNonce()) + 1)
    return bytes(
        router.swap.encode_input(vault, inner, world.weth, world.usdc, WAD, PRICE * USDC, swallow)
    )


def test_reentering_router_fails(
    world: World, over_hedged: Any, keeper: Any, reentrant_router: Any
) -> None:
    vault = over_hedged
    data = reentry_data(world, reentrant_router, vault, False)
    with ape.reverts(vault.SwapFailed, reason=REENTRANCY):
        vault.rebalance(trade(vault, True, WAD), reentrant_router, data, sender=keeper)


def test_reentry_is_refused_even_when_the_router_swallows_it(
    world: World, over_hedged: Any, keeper: Any, reentrant_router: Any
) -> None:
    vault = over_hedged
    data = reentry_data(world, reentrant_router, vault, True)
    weth_before = world.weth.balanceOf(vault)
    receipt = vault.rebalance(trade(vault, True, WAD), reentrant_router, data, sender=keeper)
    assert bytes(reentrant_router.lastInnerRevert()) == REENTRANCY
    assert reentrant_router.innerSucceeded() is False
    assert len(receipt.decode_logs(vault.Traded)) == 1  # only the outer swap happened
    assert weth_before - world.weth.balanceOf(vault) == WAD


def test_router_paying_less_than_the_oracle_bound_reverts(
    world: World, over_hedged: Any, keeper: Any, mock_router: Any
) -> None:
    vault = over_hedged
    bound = oracle_bound(WAD)
    data = swap_data(mock_router, world.weth, world.usdc, WAD, bound - 1, vault)
    with ape.reverts(vault.InsufficientOutput, received=bound - 1, required=bound):
        vault.rebalance(trade(vault, True, WAD), mock_router, data, sender=keeper)
    # Exactly the bound is enough.
    data = swap_data(mock_router, world.weth, world.usdc, WAD, bound, vault)
    receipt = vault.rebalance(trade(vault, True, WAD), mock_router, data, sender=keeper)
    (event,) = receipt.decode_logs(vault.Traded)
    assert event.amountOut == bound
    assert event.loss == PRICE * USDC - bound


def test_router_pulling_more_than_approved_fails(
    world: World, over_hedged: Any, keeper: Any, mock_router: Any
) -> None:
    vault = over_hedged
    data = swap_data(mock_router, world.weth, world.usdc, WAD + 1, PRICE * USDC, vault)
    with ape.reverts(vault.SwapFailed):
        vault.rebalance(trade(vault, True, WAD), mock_router, data, sender=keeper)


def test_unused_allowance_is_reset_and_a_used_one_is_not_touched_again(
    world: World, over_hedged: Any, keeper: Any, mock_router: Any
) -> None:
    vault = over_hedged
    # The router takes half of what it was approved for and still pays the full bound.
    data = swap_data(mock_router, world.weth, world.usdc, WAD // 2, oracle_bound(WAD), vault)
    weth_before = world.weth.balanceOf(vault)
    receipt = vault.rebalance(trade(vault, True, WAD), mock_router, data, sender=keeper)
    (event,) = receipt.decode_logs(vault.Traded)
    assert event.amountIn == WAD // 2  # what actually left the vault
    assert weth_before - world.weth.balanceOf(vault) == WAD // 2
    assert world.weth.allowance(vault, mock_router) == 0
    approvals = [e.wad for e in receipt.decode_logs(world.weth.Approval)]
    assert approvals == [WAD, 0]  # exact approve, then the reset
    # Fully used allowance: one approve, no reset call (issue #8: no approve(x, 0) when 0).
    data = swap_data(mock_router, world.weth, world.usdc, WAD, oracle_bound(WAD), vault)
    receipt = vault.rebalance(trade(vault, True, WAD), mock_router, data, sender=keeper)
    assert [e.wad for e in receipt.decode_logs(world.weth.Approval)] == [WAD]


def test_gas_burning_router_costs_at_most_its_cap(
    world: World, over_hedged: Any, keeper: Any, hostile_router: Any
) -> None:
    """Attack: a route that burns all the gas it is given. The router call is capped, the
    trade reverts with SwapFailed, and the transaction costs the cap plus a constant however
    much gas it was sent with."""
    vault = over_hedged
    cap = int(vault.SWAP_GAS_LIMIT())
    data = bytes(hostile_router.burn.encode_input())
    with ape.reverts(vault.SwapFailed, reason=b""):
        vault.rebalance(trade(vault, True, WAD), hostile_router, data, sender=keeper, gas=TX_GAS)
    used = _failed_gas_used(vault, keeper, hostile_router, data)
    print(f"\ngas: rebalance through a gas-burning router = {used} (cap {cap})")
    assert cap < used < cap + 200_000


def test_revert_bomb_is_truncated(
    world: World, over_hedged: Any, keeper: Any, hostile_router: Any
) -> None:
    """Attack: the route reverts with 300 kB of data. The vault copies 256 bytes of it."""
    vault = over_hedged
    data = bytes(hostile_router.bomb.encode_input(300_000))
    with ape.reverts(vault.SwapFailed, reason=b"\x00" * 256):
        vault.rebalance(trade(vault, True, WAD), hostile_router, data, sender=keeper, gas=TX_GAS)
    used = _failed_gas_used(vault, keeper, hostile_router, data)
    print(f"\ngas: rebalance through a 300 kB revert bomb = {used}")
    assert used < int(vault.SWAP_GAS_LIMIT()) + 200_000


def _failed_gas_used(vault: Any, keeper: Any, router: Any, data: bytes) -> int:
    """gasUsed of the reverting rebalance, mined with a large gas limit (sent from the node's
    unlocked account, since Ape refuses to send a transaction it expects to revert)."""
    calldata = bytes(vault.rebalance.encode_input(trade(vault, True, WAD), router, data))
    w3 = ape.chain.provider.web3
    tx_hash = w3.eth.send_transaction(
        {"from": keeper.address, "to": vault.address, "data": calldata, "gas": TX_GAS}
    )
    mined = w3.eth.wait_for_transaction_receipt(tx_hash)
    assert mined["status"] == 0
    return int(mined["gasUsed"])


def test_token_without_bool_returns_works(
    world: World, deployer: Any, keeper: Any, project: Any, vault: Any
) -> None:
    usdt = deployer.deploy(project.NoBoolERC20, "Tether USD", "USDT", 6)
    guards = list(vault.guards())
    ceilings = (
        vault.notionalCapCeiling(),
        vault.maxTradeNotionalCeiling(),
        vault.lossBudgetCeiling(),
    )
    no_bool_vault = deployer.deploy(
        project.OptionsVault,
        deployer,
        usdt,
        world.weth,
        world.feed,
        tuple(vault.params()),
        tuple(guards),
        ceilings,
        3600,
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

    # No book and target 2 WETH: the vault must buy. Two buys (forceApprove). The router takes
    # only half of the approval each time; without the reset to 0 the second approve would
    # revert (this token refuses non-zero to non-zero).
    set_deviation(no_bool_vault, deployer, -3 * WAD)
    amount = 3000 * USDC
    for _ in range(2):
        data = swap_data(router, usdt, world.weth, amount // 2, WAD, no_bool_vault)
        no_bool_vault.rebalance(trade(no_bool_vault, False, amount), router, data, sender=keeper)
        assert usdt.allowance(no_bool_vault, router) == 0
    assert usdt.balanceOf(no_bool_vault) == 40_000 * USDC - amount
    assert world.weth.balanceOf(no_bool_vault) == 2 * WAD


def test_token_call_to_non_contract_fails(world: World, vault: Any, deployer: Any) -> None:
    with ape.reverts(vault.SafeERC20FailedOperation):
        vault.withdraw(deployer, deployer, 1, sender=deployer)
