"""Trade sizing, the fee gate and batch packing (pure, integer amounts)."""

from __future__ import annotations

from dataclasses import replace

from keeper.core.abi import RebalanceLeg
from keeper.core.planner import (
    Decimals,
    FeeGate,
    NoTrade,
    TradeSpec,
    pack_batches,
    quote_to_underlying,
    size_trade,
    split_by_fees,
    underlying_to_quote,
)
from keeper.core.types import (
    WAD,
    Action,
    Decision,
    OracleRound,
    PolicyKind,
    VaultParams,
    VaultState,
)

NOW = 1_800_000_000
ANSWER = 3000 * 10**8  # $3,000, 8 decimals
D = Decimals()


def state(
    weth: int = 10 * WAD,
    usdc: int = 100_000 * 10**6,
    cap: int = 10**12,
    used: int = 0,
    window_start: int = NOW - 60,
) -> VaultState:
    params = VaultParams(
        8 * 10**17,
        0,
        0,
        10**17,
        3 * WAD,
        10**14,
        PolicyKind.GAS_ADJUSTED_BAND,
        0,
        100,
        cap,
        3600,
        3600,
    )
    return VaultState(
        "0xV",
        usdc,
        weth,
        params,
        (),
        OracleRound(1, ANSWER, NOW, 8),
        False,
        0,
        0,
        0,
        used,
        window_start,
    )


def decision(trade_wei: int, urgent: bool = False) -> Decision:
    return Decision("0xV", 1, "0xb", Action.REBALANCE, "band", trade_wei=trade_wei, urgent=urgent)


def test_oracle_conversions_round_down_like_the_vault() -> None:
    assert underlying_to_quote(WAD, ANSWER, 8, D) == 3000 * 10**6
    assert quote_to_underlying(3000 * 10**6, ANSWER, 8, D) == WAD
    assert underlying_to_quote(1, ANSWER, 8, D) == 0  # dust rounds down


def test_selling_underlying_moves_the_hedge_by_the_decided_amount() -> None:
    spec = size_trade(decision(-2 * WAD), state(), NOW, fee_bps=5)
    assert spec == TradeSpec("0xV", True, 2 * WAD, False, "")


def test_buying_underlying_grosses_the_quote_up_by_the_fee() -> None:
    spec = size_trade(decision(WAD), state(), NOW, fee_bps=5)
    assert isinstance(spec, TradeSpec) and not spec.sell_underlying
    assert spec.amount_in == 3000 * 10**6 * 10_000 // 9_995


def test_balances_and_the_notional_window_cap_the_trade() -> None:
    poor = size_trade(decision(-20 * WAD), state(weth=WAD), NOW, fee_bps=5)
    assert isinstance(poor, TradeSpec) and poor.amount_in == WAD and "balance" in poor.note
    capped = size_trade(decision(-2 * WAD), state(cap=4500 * 10**6, used=1500 * 10**6), NOW, 5)
    assert isinstance(capped, TradeSpec) and capped.amount_in == WAD  # $3,000 left = 1 WETH
    full = size_trade(decision(-2 * WAD), state(cap=10**9, used=10**9), NOW, 5)
    assert isinstance(full, NoTrade)
    # the window restarts after windowSeconds, as on chain
    fresh = size_trade(
        decision(-2 * WAD), state(cap=10**10, used=10**10, window_start=NOW - 3600), NOW, 5
    )
    assert isinstance(fresh, TradeSpec) and fresh.amount_in == 2 * WAD


def test_hold_decisions_are_not_traded() -> None:
    hold = replace(decision(WAD), action=Action.HOLD)
    assert isinstance(size_trade(hold, state(), NOW, 5), NoTrade)


def test_above_the_cap_only_urgent_trades_go() -> None:
    calm, urgent = TradeSpec("0xA", True, 1, False), TradeSpec("0xB", True, 1, True)
    assert split_by_fees([calm, urgent], FeeGate(50, 100)) == ([calm, urgent], [])
    assert split_by_fees([calm, urgent], FeeGate(150, 100)) == ([urgent], [calm])


def leg(i: int) -> RebalanceLeg:
    return RebalanceLeg(f"0x{i:040x}", True, 1, 1, "0x" + "11" * 20, b"")


def test_one_batch_unless_the_gas_limit_says_otherwise() -> None:
    legs = [leg(i) for i in range(10)]
    (one,) = pack_batches(legs, [110_000] * 10, 80_000, 6_000_000)
    assert one.legs == tuple(legs) and one.gas_limit == 80_000 + 10 * 110_000
    split = pack_batches(legs, [110_000] * 10, 80_000, 500_000)
    assert [len(b.legs) for b in split] == [3, 3, 3, 1]
    assert all(b.gas_limit <= 500_000 for b in split)
    assert [x for b in split for x in b.legs] == legs  # order kept
    (alone,) = pack_batches([leg(0)], [900_000], 80_000, 500_000)  # too big still goes alone
    assert alone.legs == (leg(0),)
