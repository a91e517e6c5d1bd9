"""Trade sizing within the v2 guards and the fee gate (pure, integer amounts)."""

from __future__ import annotations

from dataclasses import replace

from vaults import GUARDS, PARAMS, USDC, vault_state

from keeper.core.planner import (
    FeeGate,
    NoTrade,
    TradeSpec,
    direction_ok,
    notional_usable,
    quote_to_underlying,
    size_trade,
    split_by_fees,
    underlying_to_quote,
    within_block_gas,
)
from keeper.core.types import WAD, Action, Decision

COST, LOSS = 5, 35  # bps


def decision(trade_wei: int, urgent: bool = False) -> Decision:
    """A rebalance whose deviation is exactly the opposite of the trade (back to target)."""
    return Decision(
        "0xV",
        1,
        "0xb",
        Action.REBALANCE,
        "band",
        deviation=-trade_wei / WAD,
        trade_wei=trade_wei,
        urgent=urgent,
    )


def spec(d: Decision, **state: object) -> TradeSpec:
    out = size_trade(d, vault_state(**state), COST, LOSS)  # type: ignore[arg-type]
    assert isinstance(out, TradeSpec), out
    return out


def test_oracle_conversions_round_down_like_the_vault_at_any_decimals() -> None:
    s = vault_state()
    assert underlying_to_quote(WAD, s) == 3000 * USDC
    assert quote_to_underlying(3000 * USDC, s) == WAD
    assert underlying_to_quote(1, s) == 0  # dust rounds down
    odd = vault_state(quote_decimals=18, underlying_decimals=8)
    assert underlying_to_quote(10**8, odd) == 3000 * 10**18
    assert quote_to_underlying(1500 * 10**18, odd) == 5 * 10**7


def test_selling_gives_exactly_the_deviation_and_buying_grosses_up_the_quote() -> None:
    sell = spec(decision(-2 * WAD))
    assert (sell.sell_underlying, sell.amount_in, sell.underlying) == (True, 2 * WAD, 2 * WAD)
    buy = spec(decision(WAD))
    assert not buy.sell_underlying and buy.underlying == WAD
    assert buy.amount_in == 3000 * USDC * 10_000 // (10_000 - COST)
    assert sell.deviation_wad == 2 * WAD and buy.deviation_wad == -WAD


def test_per_trade_cap_binds_and_says_so() -> None:
    small = replace(GUARDS, max_trade_notional=4500 * USDC)
    t = spec(decision(-2 * WAD), guards=small)
    assert t.amount_in == WAD * 3 // 2 and "maxTradeNotional" in t.note


def test_a_non_corrective_trade_leaves_the_reserve_to_corrective_ones() -> None:
    # bucket: 300k left of 1M, reserve 20% = 200k: a band trade may use 100k, an urgent one 300k
    s = {"notional_available": 300_000 * USDC}
    wide = replace(PARAMS, hard_limit_wad=100 * WAD)  # |dev| 50 below the hard limit
    band = spec(decision(-50 * WAD), params=wide, **s)
    assert not band.corrective
    assert underlying_to_quote(band.amount_in, vault_state()) <= 100_000 * USDC
    assert "notional bucket" in band.note
    urgent = spec(decision(-50 * WAD, urgent=True), **s)  # |dev| 50 >= hard limit 3
    assert (
        urgent.corrective and underlying_to_quote(urgent.amount_in, vault_state()) <= 300_000 * USDC
    )
    assert urgent.amount_in > band.amount_in
    assert notional_usable(vault_state(notional_available=100 * USDC), False) == 0


def test_the_loss_bucket_caps_the_notional_at_the_worst_signed_price() -> None:
    t = spec(decision(-50 * WAD), loss_available=350 * USDC)  # 350 / 35 bps = 100k notional
    assert underlying_to_quote(t.amount_in, vault_state()) <= 100_000 * USDC
    assert "loss bucket" in t.note


def test_balances_cap_and_nothing_to_sell_is_no_trade() -> None:
    t = spec(decision(-20 * WAD), underlying_balance=WAD)
    assert t.amount_in == WAD and "balance" in t.note
    out = size_trade(decision(-WAD), vault_state(underlying_balance=0), COST, LOSS)
    assert isinstance(out, NoTrade)
    hold = replace(decision(WAD), action=Action.HOLD)
    assert isinstance(size_trade(hold, vault_state(), COST, LOSS), NoTrade)


def test_direction_rule_mirrors_the_vault() -> None:
    s = vault_state()  # max overshoot 0.1
    assert direction_ok(2 * WAD, -2 * WAD, s)  # to target
    assert direction_ok(2 * WAD, -WAD, s)  # towards it
    assert not direction_ok(0, -WAD, s)  # a vault on target cannot be churned
    assert direction_ok(0, -WAD // 10, s)  # ... except inside the allowance, either way
    assert direction_ok(WAD // 20, WAD // 40, s)  # away, but still inside the allowance
    assert not direction_ok(2 * WAD, WAD, s)  # away from target
    assert direction_ok(2 * WAD, -(2 * WAD + WAD // 10), s)  # past it by the allowance
    assert not direction_ok(2 * WAD, -(2 * WAD + WAD // 10 + 1), s)


def test_a_trade_larger_than_deviation_plus_overshoot_is_capped() -> None:
    d = replace(decision(-5 * WAD), deviation=1.0)  # keeper's greeks disagree with its trade
    t = spec(d)
    assert t.amount_in == WAD + WAD // 10 and "overshoot" in t.note


def test_fee_gate_lets_only_urgent_trades_through_above_the_cap() -> None:
    calm, urgent = spec(decision(-WAD)), spec(decision(-WAD, urgent=True))
    assert split_by_fees([calm, urgent], FeeGate(50, 100)) == ([calm, urgent], [])
    assert split_by_fees([calm, urgent], FeeGate(150, 100)) == ([urgent], [calm])


def test_the_block_gas_share_bounds_what_is_sent_together_never_the_first() -> None:
    limits = [15_000_000, 15_000_000, 400_000, 15_000_000]
    assert within_block_gas(limits, 30_000_000, 1.0) == 2  # the third would pass 30M
    assert within_block_gas(limits, 30_000_000, 0.5) == 1  # 15M: one settlement
    assert within_block_gas(limits, 30_000_000, 0.1) == 1  # the first always goes
    assert within_block_gas([40_000_000], 30_000_000, 1.0) == 0  # fits in no block
    assert within_block_gas(limits, 0, 1.0) == 4  # the block's limit unknown: all
    assert within_block_gas([], 30_000_000, 1.0) == 0
