"""Issue #8's attacks on a single vault, written as an attacker would, each refused on chain.

The compromised key is the world's keeper key (``keeper``): whatever it signs, the vault's own
checks bound what it can do. Settlement attacks are in test_settlement.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ape
import pytest
from ape.exceptions import ContractLogicError
from attacker_pool import FEE, create_attacker_pool
from contract_helpers import (
    BPS,
    ORACLE,
    PRICE,
    USDC,
    WAD,
    World,
    exact_input_single,
    oracle_value,
    refresh_oracle,
    set_deviation,
    set_guards,
    trade,
    vault_value,
)

OVERSHOOT_MARGIN = WAD // 100  # trade to 0.49 WETH past the target, inside the 0.5 allowance


@pytest.fixture
def oracle_router(world: World, deployer: Any, project: Any) -> Any:
    """A counterparty paying exactly the oracle value, allowlisted on every world vault: the
    trades below then test the vault's guards, not the pool."""
    router = deployer.deploy(project.MockRouter)
    for vault in world.vaults.values():
        vault.setRouter(router, True, sender=deployer)
    world.usdc.mint(router, 10_000_000 * USDC, sender=deployer)
    world.weth.deposit(value=2_000 * WAD, sender=deployer)
    world.weth.transfer(router, 2_000 * WAD, sender=deployer)
    refresh_oracle(world, deployer)
    return router


def at_oracle(
    world: World, router: Any, vault: Any, key: Any, sell: bool, amount: int, answer: int
) -> Any:
    """Trade through ``router`` paying the oracle value of ``amount``."""
    if sell:
        pay = amount * answer * USDC // (WAD * ORACLE)
        data = router.swap.encode_input(world.weth, world.usdc, amount, pay, vault)
    else:
        pay = amount * WAD * ORACLE // (answer * USDC)
        data = router.swap.encode_input(world.usdc, world.weth, amount, pay, vault)
    return vault.rebalance(trade(vault, sell, amount), router, bytes(data), sender=key)


def churn_step(vault: Any, answer: int = PRICE * ORACLE) -> tuple[bool, int]:
    """The largest trade the direction check lets through: from the deviation now to 0.49
    WETH past the target on the other side. (sell?, amountIn)."""
    dev = int(vault.deviationWad())
    reach = WAD // 2 - OVERSHOOT_MARGIN
    if dev > 0:
        return True, dev + reach
    return False, (reach - dev) * answer * USDC // (WAD * ORACLE) * 99 // 100


def churn(
    vault: Any, send: Callable[[bool, int], Any], max_trades: int = 200
) -> tuple[int, int, int, str]:
    """Trade back and forth until the vault refuses: (loss, notional, trades, refusal)."""
    loss = notional = 0
    for count in range(max_trades):
        sell, amount = churn_step(vault)
        try:
            receipt = send(sell, amount)
        except ContractLogicError as err:
            return loss, notional, count, type(err).__name__
        (event,) = receipt.decode_logs(vault.Traded)
        loss += int(event.loss)
        notional += oracle_value(amount) if sell else amount
    raise AssertionError(f"the vault accepted {max_trades} churning trades")


# --- stale trades (compare-and-swap) ---------------------------------------------------------


def test_stale_trade_after_the_state_moved_reverts(
    world: World, vault: Any, keeper: Any, deployer: Any, oracle_router: Any
) -> None:
    """Attack: a trade signed before a crash is broadcast again after the state moved (here a
    deposit), and a mined trade is broadcast twice. Both revert with StaleState."""
    set_deviation(vault, deployer, 3 * WAD)
    nonce = int(vault.stateNonce())
    signed = trade(vault, True, WAD)
    pay = oracle_value(WAD)
    data = bytes(oracle_router.swap.encode_input(world.weth, world.usdc, WAD, pay, vault))

    world.usdc.mint(deployer, USDC, sender=deployer)
    world.usdc.approve(vault, USDC, sender=deployer)
    vault.deposit(world.usdc, USDC, sender=deployer)  # the state moves on
    weth = world.weth.balanceOf(vault)
    with ape.reverts(vault.StaleState, expected=nonce, actual=nonce + 1):
        vault.rebalance(signed, oracle_router, data, sender=keeper)
    assert world.weth.balanceOf(vault) == weth

    fresh = trade(vault, True, WAD)
    vault.rebalance(fresh, oracle_router, data, sender=keeper)
    with ape.reverts(vault.StaleState, expected=nonce + 1, actual=nonce + 2):
        vault.rebalance(fresh, oracle_router, data, sender=keeper)  # re-broadcast: no double
    assert weth - world.weth.balanceOf(vault) == WAD


# --- direction and size ----------------------------------------------------------------------


def test_wrong_direction_whole_balance_sale_on_target_is_refused(
    world: World, vault: Any, keeper: Any, deployer: Any, oracle_router: Any
) -> None:
    """Attack: on target, the key sells the whole hedge. The whole balance is above the
    per-trade cap; the largest trade under the cap is refused by the direction check, and so
    is a small sale that leaves the vault further off target on the side it already is."""
    answer = PRICE * ORACLE
    dev = int(vault.deviationWad())
    assert abs(dev) < WAD // 1000  # the world starts hedged
    whole = int(world.weth.balanceOf(vault))
    with ape.reverts(vault.TradeTooLarge):
        at_oracle(world, oracle_router, vault, keeper, True, whole, answer)
    cap = int(vault.guards().maxTradeNotional)
    largest = cap * WAD // (PRICE * USDC)
    with ape.reverts(vault.Overshoot if dev > 0 else vault.WrongDirection):
        at_oracle(world, oracle_router, vault, keeper, True, largest, answer)
    # Already 0.4 below target: selling even 0.2 more goes the wrong way.
    set_deviation(vault, deployer, -4 * WAD // 10)
    with ape.reverts(vault.WrongDirection):
        at_oracle(world, oracle_router, vault, keeper, True, WAD // 5, answer)
    # Within the overshoot allowance the honest keeper's float greeks are tolerated.
    at_oracle(world, oracle_router, vault, keeper, False, 2400 * USDC, answer)


def test_window_edge_burst_is_bounded_by_the_bucket(
    world: World, vault: Any, keeper: Any, deployer: Any, oracle_router: Any
) -> None:
    """Attack: spend the notional cap at the end of one window and again at the start of the
    next (v1: 6.8% of the vault in 11 s). With a token bucket, 11 s later only 11 s of refill
    is available."""
    cap = 10_000 * USDC
    set_guards(vault, deployer, notionalCap=cap)  # tighter: applies at once
    reserve = cap * int(vault.guards().correctiveReserveBps) // BPS
    answer = PRICE * ORACLE

    def send(sell: bool, amount: int) -> Any:
        return at_oracle(world, oracle_router, vault, keeper, sell, amount, answer)

    began = int(ape.chain.blocks.head.timestamp)
    _, first_burst, trades, refusal = churn(vault, send)
    start = int(ape.chain.blocks.head.timestamp)
    assert refusal == "NotionalCapExceeded"
    during = cap * (start - began + 1) // 3600  # what refilled while the burst ran
    assert cap - reserve - 3000 * USDC < first_burst <= cap - reserve + during

    ape.chain.pending_timestamp = start + 11
    refill = cap * 11 // 3600
    sell, amount = churn_step(vault)
    with ape.reverts(vault.NotionalCapExceeded):
        send(sell, amount)
    state = vault.getState()
    available = int(state.notionalAvailable)
    # What refilled since the burst's last trade: the 11 s above plus however long that trade
    # was before `start` (block timestamps, not a wall-clock guess), plus one unit of rounding.
    since_last = start + 11 - int(state.lastRebalanceAt)
    bound = (cap - reserve - first_burst) + during + cap * since_last // 3600 + 1
    assert since_last >= 11 and available - reserve <= bound
    assert refill <= cap * since_last // 3600  # only seconds of refill, not a new window
    print(
        f"\nwindow edge: {trades} trades spent {first_burst / USDC:,.0f} USDC of a"
        f" {cap / USDC:,.0f} cap; 11 s later {(available - reserve) / USDC:,.2f} USDC usable"
    )


def test_per_trade_cap_applies_to_buys_in_quote_units(
    world: World, vault: Any, keeper: Any, deployer: Any, oracle_router: Any
) -> None:
    set_deviation(vault, deployer, -20 * WAD)
    cap = int(vault.guards().maxTradeNotional)
    with ape.reverts(vault.TradeTooLarge, notional=cap + 1, max=cap):
        at_oracle(world, oracle_router, vault, keeper, False, cap + 1, PRICE * ORACLE)


# --- lock-out of the honest keeper -------------------------------------------------------------


def test_corrective_reserve_keeps_an_urgent_correction_possible(
    world: World, vault: Any, keeper: Any, deployer: Any, oracle_router: Any
) -> None:
    """Attack: the key burns the shared notional cap on churning trades so that the honest
    keeper's correction reverts for the next hour (v1). The last 20% of the bucket is reserved
    for trades that start from |deviation| >= hardLimit: after a 10% move the correction
    goes through; the key's own non-urgent trades still cannot touch the reserve."""
    answer = PRICE * ORACLE

    def send(sell: bool, amount: int) -> Any:
        return at_oracle(world, oracle_router, vault, keeper, sell, amount, answer)

    _, burnt, trades, refusal = churn(vault, send)
    assert refusal == "NotionalCapExceeded"
    guards = vault.guards()
    reserve = int(guards.notionalCap) * int(guards.correctiveReserveBps) // BPS
    assert int(vault.getState().notionalAvailable) < reserve + 3000 * USDC

    moved = 3300 * ORACLE
    refresh_oracle(world, deployer, moved)
    dev = int(vault.deviationWad())
    assert dev <= -int(vault.params().hardLimitWad)  # short calls after a rally: urgent
    correction = reserve * 9 // 10
    receipt = at_oracle(world, oracle_router, vault, keeper, False, correction, moved)
    assert len(receipt.decode_logs(vault.Traded)) == 1
    assert int(vault.deviationWad()) > dev
    print(
        f"\nlock-out: {trades} churning trades burnt {burnt / USDC:,.0f} USDC of notional; "
        f"the urgent correction of {correction / USDC:,.0f} USDC at |dev| = {-dev / WAD:.2f} "
        "WETH used the reserve"
    )


# --- a compromised key with its own pool ------------------------------------------------------


def test_compromised_key_with_its_own_pool_stops_at_the_loss_budget(
    world: World, keeper: Any, deployer: Any, attacker: Any
) -> None:
    """Attack: the key routes every trade through a 1% pool the attacker owns, moved so each
    trade lands just above the oracle bound (97 bps to the attacker), and churns back and forth
    as far as the direction check allows. The loss budget stops it; measured on every world
    vault."""
    refresh_oracle(world, deployer)
    pool = create_attacker_pool(world, attacker, deployer)
    print("\ncompromised key through its own 1% pool, per vault and window (1 h):")
    for name, vault in world.vaults.items():
        budget = int(vault.guards().lossBudget)
        value = vault_value(world, vault)
        start = int(ape.chain.blocks.head.timestamp)

        def send(sell: bool, amount: int, vault: Any = vault) -> Any:
            pool.place_for(sell)
            token_in, token_out = (world.weth, world.usdc) if sell else (world.usdc, world.weth)
            data = exact_input_single(world, token_in, token_out, FEE, vault, amount)
            return vault.rebalance(trade(vault, sell, amount), world.router, data, sender=keeper)

        loss, notional, trades, refusal = churn(vault, send)
        elapsed = int(ape.chain.blocks.head.timestamp) - start + 1
        assert refusal == "LossBudgetExceeded", name
        refill = budget * elapsed // 3600
        assert loss <= budget + refill, name
        assert loss > budget * 9 // 10, name  # the budget, not another guard, stopped it
        print(
            f"  {name:15s} {trades:3d} trades, notional {notional / USDC:9,.0f} USDC, loss "
            f"{loss / USDC:7,.2f} USDC = {loss / value:.4%} of {value / USDC:,.0f} USDC "
            f"(budget {budget / USDC:,.2f}, {loss * BPS / notional:.0f} bps of notional)"
        )


# --- governance --------------------------------------------------------------------------------


def test_guards_cannot_be_switched_off_in_one_call(vault: Any, deployer: Any) -> None:
    """Attack: (compromised or careless) governance switches every guard off in one call.
    Ceilings refuse the extreme values; anything looser waits out guardDelay, visibly."""
    current = [int(v) for v in vault.guards()]
    (slippage, cap, budget, _, trade_cap, reserve, overshoot, heartbeat) = current
    for index, value, field, ceiling in (
        (0, 10_000, "maxSlippageBps", 500),
        (1, cap * 100, "notionalCap", int(vault.notionalCapCeiling())),
        (2, budget * 100, "lossBudget", int(vault.lossBudgetCeiling())),
        (4, trade_cap * 100, "maxTradeNotional", int(vault.maxTradeNotionalCeiling())),
        (5, 10_000, "correctiveReserveBps", 9000),
        (7, 10 * 86400, "oracleHeartbeat", 86400),
        (3, 30 * 86400, "windowSeconds", 7 * 86400),
    ):
        off = list(current)
        off[index] = value
        with ape.reverts(vault.AboveCeiling, field=field, value=value, ceiling=ceiling):
            vault.proposeGuards(tuple(off), sender=deployer)
    with ape.reverts(vault.InvalidParams, field="windowSeconds"):
        vault.proposeGuards(
            (slippage, cap, budget, 1, trade_cap, reserve, overshoot, heartbeat), sender=deployer
        )

    loose = (500, cap * 4, budget * 4, 60, trade_cap * 4, 0, overshoot * 10, 86400)
    receipt = vault.proposeGuards(loose, sender=deployer)
    (proposed,) = receipt.decode_logs(vault.GuardsProposed)
    assert proposed.loosens and proposed.eta == receipt.timestamp + 3600
    assert [int(v) for v in vault.guards()] == current  # nothing changed yet
    with ape.reverts(vault.GuardsNotReady, eta=proposed.eta):
        vault.applyGuards(sender=deployer)
    receipt = vault.cancelGuards(sender=deployer)
    assert [e.version for e in receipt.decode_logs(vault.GuardsCancelled)] == [proposed.version]
    with ape.reverts(vault.NoPendingGuards):
        vault.applyGuards(sender=deployer)

    receipt = vault.proposeGuards(loose, sender=deployer)
    (proposed,) = receipt.decode_logs(vault.GuardsProposed)
    ape.chain.pending_timestamp = int(proposed.eta)
    receipt = vault.applyGuards(sender=deployer)
    assert len(receipt.decode_logs(vault.GuardsApplied)) == 1
    assert tuple(int(v) for v in vault.guards()) == loose

    # Tightening applies at once; and it clips the buckets to the new capacity.
    tight = (50, cap // 2, budget // 2, 7200, trade_cap // 2, 5000, overshoot // 2, 600)
    receipt = vault.proposeGuards(tight, sender=deployer)
    (proposed,) = receipt.decode_logs(vault.GuardsProposed)
    assert not proposed.loosens and len(receipt.decode_logs(vault.GuardsApplied)) == 1
    assert tuple(int(v) for v in vault.guards()) == tight
    state = vault.getState()
    assert (state.notionalAvailable, state.lossAvailable) == (cap // 2, budget // 2)


# --- oracle --------------------------------------------------------------------------------------


def test_gas_burning_feed_reads_not_ok_and_keeps_the_multicall_alive(
    world: World, vault: Any, deployer: Any, keeper: Any, project: Any
) -> None:
    """Attack: a feed that burns all the gas it gets. v1 forwarded all gas, so one vault broke
    the keeper's whole multicall read. The vault's staticcall has a 100k stipend."""
    feed = deployer.deploy(project.GasBurningFeed, PRICE * ORACLE)
    burning_vault = deployer.deploy(
        project.OptionsVault,
        deployer,
        world.usdc,
        world.weth,
        feed,
        tuple(vault.params()),
        tuple(vault.guards()),
        (vault.notionalCapCeiling(), vault.maxTradeNotionalCeiling(), vault.lossBudgetCeiling()),
        3600,
    )
    burning_vault.setKeeper(keeper, True, sender=deployer)
    burning_vault.setRouter(world.router, True, sender=deployer)
    assert burning_vault.getState().oracle.ok is True
    feed.setBurning(True, sender=deployer)

    state = burning_vault.getState()
    assert state.oracle.ok is False and state.oracle.answer == 0
    gas = ape.chain.provider.web3.eth.estimate_gas(
        {"to": burning_vault.address, "data": bytes(burning_vault.getState.encode_input())}
    )
    print(f"\ngas: getState with a gas-burning feed = {gas}")
    assert gas < 200_000

    calls = [
        (v, False, bytes(v.getState.encode_input()))
        for v in (*world.vaults.values(), burning_vault)
    ]
    results = world.multicall.aggregate3.call(calls, gas=2_000_000)
    assert all(r.success for r in results)
    with ape.reverts(burning_vault.OracleCallFailed, feed=feed.address):
        burning_vault.rebalance(trade(burning_vault, True, WAD), world.router, b"", sender=keeper)
