"""The book planner (keeper.core.book): netting, payouts, caps, the split, several settlements.

The depth comes from a constant-product pool with a 0.3% fee (x*y=k, Uniswap V2 whitepaper
section 3.2): each test knows exactly what every vault's own swap would have returned, so
"no vault is worse off than trading alone" is checked against that, not against the planner's
own bound.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest
from vaults import GUARDS, USDC, vault_state

from keeper.core.book import (
    MAX_LEGS,
    BookConfig,
    BookPlan,
    Depth,
    DexCurve,
    chunk_nets,
    first_buyer_problem,
    leg_problem,
    net_need,
    plan_book,
    sample_sizes,
)
from keeper.core.planner import TradeSpec, direction_ok, size_trade, underlying_to_quote
from keeper.core.types import WAD, Action, Decision

COST, TOL = 30, 30  # bps: expected cost, net slippage tolerance
CFG = BookConfig(cost_bps=COST, net_slippage_bps=TOL, deadline=1_900_000_000)


@dataclass(frozen=True)
class Pool:
    """x*y=k with a fee, priced at the oracle's $3,000 (WETH reserve, USDC reserve)."""

    weth: int = 10_000 * WAD
    usdc: int = 30_000_000 * USDC
    fee_bps: int = 30

    def out(self, sell_underlying: bool, amount_in: int) -> int:
        x, y = (self.weth, self.usdc) if sell_underlying else (self.usdc, self.weth)
        a = amount_in * (10_000 - self.fee_bps)
        return y * a // (x * 10_000 + a)

    def depth(self, sizes: dict[bool, list[int]]) -> Depth:
        def curve(side: bool) -> DexCurve:
            pts = tuple((a, self.out(side, a)) for a in sorted(sizes.get(side, [])))
            return DexCurve(side, pts)

        return Depth(sell=curve(True), buy=curve(False))


def trade(i: int, wei: int, **state: object) -> TradeSpec:
    d = Decision(
        f"0x{i:040x}", 1, "0xb", Action.REBALANCE, "band", deviation=-wei / WAD, trade_wei=wei
    )
    spec = size_trade(
        d, vault_state(address=d.vault, state_nonce=100 + i, **state), COST, COST + TOL
    )  # type: ignore[arg-type]
    assert isinstance(spec, TradeSpec), spec
    return spec


def plan(trades: list[TradeSpec], pool: Pool = Pool(), cfg: BookConfig = CFG) -> BookPlan:
    return plan_book(trades, pool.depth(sample_sizes(trades, net_need(trades, COST))), cfg)


def alone(t: TradeSpec, pool: Pool) -> int:
    """What the vault's own swap would return, signed at the same tolerance."""
    return pool.out(t.sell_underlying, t.amount_in) * (10_000 - TOL) // 10_000


def price_ok(t: TradeSpec, given: int, payout: int, pool: Pool) -> bool:
    """payout/given at least as good as its own trade's alone(t)/t.amount_in."""
    return payout * t.amount_in >= alone(t, pool) * given


def test_opposite_trades_match_at_the_oracle_and_only_the_net_is_swapped() -> None:
    seller, buyer = trade(1, -10 * WAD), trade(2, 6 * WAD)
    p = plan([seller, buyer])
    assert p.excluded == {} and p.split is None
    (s,) = p.settlements
    assert (s.net.sell_underlying, s.net.amount_in) == (True, 4 * WAD)
    assert p.matched_underlying == 6 * WAD
    legs = {leg.vault: leg for leg in s.legs}
    b = legs[buyer.vault]
    assert b.payout == 6 * WAD  # the buyer gets exactly what it asked for ...
    assert b.trade.amount_in == 18_000 * USDC  # ... for its oracle value, no DEX fee
    sl = legs[seller.vault]
    assert sl.trade.amount_in == 10 * WAD
    assert sl.payout == 18_000 * USDC + s.net_min_out  # matched quote + the net's minimum
    assert s.net_min_out == Pool().out(True, 4 * WAD) * (10_000 - TOL) // 10_000
    for leg in s.legs:  # what the vault enforces: minOut is the payout, CAS on its nonce
        assert leg.trade.min_out == leg.payout
        assert leg.trade.expected_state_nonce in (101, 102)
    assert price_ok(seller, sl.trade.amount_in, sl.payout, Pool())
    assert price_ok(buyer, b.trade.amount_in, b.payout, Pool())


def test_buyers_on_the_net_side_share_the_net_swap_and_sellers_get_the_oracle_value() -> None:
    seller, b1, b2 = trade(1, -4 * WAD), trade(2, 6 * WAD), trade(3, 4 * WAD)
    p = plan([seller, b1, b2])
    (s,) = p.settlements
    assert not s.net.sell_underlying and s.net.amount_in > 0
    legs = {leg.vault: leg for leg in s.legs}
    assert legs[seller.vault].payout == 12_000 * USDC
    got = legs[b1.vault].payout + legs[b2.vault].payout
    assert got <= 4 * WAD + s.net_min_out  # nothing paid that the settlement does not hold
    assert legs[b1.vault].payout * 4 // 6 == pytest.approx(legs[b2.vault].payout, abs=2)
    paid = sum(leg.trade.amount_in for leg in s.legs if not leg.trade.sell_underlying)
    assert paid >= 12_000 * USDC + s.net.amount_in  # the buyers fund the sellers and the net


def test_an_exact_match_swaps_nothing() -> None:
    p = plan([trade(1, -3 * WAD), trade(2, 3 * WAD)])
    (s,) = p.settlements
    assert s.net.amount_in == 0 and s.net_min_out == 0
    assert {leg.payout for leg in s.legs} == {3 * WAD, 9_000 * USDC}


def test_one_vault_is_its_own_net() -> None:
    t = trade(1, -2 * WAD)
    (s,) = plan([t]).settlements
    (leg,) = s.legs
    assert leg.trade.amount_in == 2 * WAD == s.net.amount_in
    assert leg.payout == s.net_min_out == alone(t, Pool())


@pytest.mark.parametrize("seed", range(12))
def test_random_books_never_make_a_vault_worse_off_and_conserve_tokens(seed: int) -> None:
    rng = random.Random(seed)
    pool = Pool()
    trades = [
        trade(i, rng.choice((-1, 1)) * rng.randint(WAD // 100, 40 * WAD)) for i in range(1, 30)
    ]
    depth = pool.depth(sample_sizes(trades, net_need(trades, COST)))
    p = plan_book(trades, depth, CFG)
    planned = {leg.vault for s in p.settlements for leg in s.legs}
    assert planned | set(p.excluded) == {t.vault for t in trades}
    by_vault = {t.vault: t for t in trades}
    for s in p.settlements:
        for leg in s.legs:
            t = by_vault[leg.vault]
            assert price_ok(t, leg.trade.amount_in, leg.payout, pool), leg
            assert leg_problem(t, leg, depth, TOL) == ""
        sold = sum(leg.trade.amount_in for leg in s.legs if leg.trade.sell_underlying)
        to_buyers = sum(leg.payout for leg in s.legs if not leg.trade.sell_underlying)
        paid_q = sum(leg.trade.amount_in for leg in s.legs if not leg.trade.sell_underlying)
        to_sellers = sum(leg.payout for leg in s.legs if leg.trade.sell_underlying)
        if s.net.sell_underlying:
            assert sold == to_buyers + s.net.amount_in
            assert to_sellers <= paid_q + s.net_min_out
        else:
            assert paid_q >= to_sellers + s.net.amount_in
            assert to_buyers <= sold + s.net_min_out


def test_a_net_larger_than_the_pool_takes_inside_the_bound_is_split_over_blocks() -> None:
    shallow = Pool(weth=5_000 * WAD, usdc=15_000_000 * USDC)
    sellers = [trade(i, -30 * WAD) for i in range(1, 5)]  # a 110 WETH net: 2% impact
    buyer = trade(9, 10 * WAD)
    p = plan([*sellers, buyer], shallow)
    assert p.split is not None
    assert p.split.net_now < p.split.net_wanted and p.split.blocks >= 2
    assert p.split.bound_bps == GUARDS.max_slippage_bps
    (s,) = p.settlements
    assert s.net.amount_in == p.split.net_now
    fair = underlying_to_quote(s.net.amount_in, sellers[0].state)
    assert s.net_min_out >= fair * (10_000 - GUARDS.max_slippage_bps) // 10_000  # inside
    legs = {leg.vault: leg for leg in s.legs}
    assert legs[buyer.vault].payout == 10 * WAD  # the matched side is done in full
    assert all(legs[t.vault].trade.amount_in < 30 * WAD for t in sellers)  # the rest waits


def test_a_pool_too_shallow_for_any_net_trades_only_the_matched_part() -> None:
    puddle = Pool(weth=200 * WAD, usdc=600_000 * USDC)
    sellers = [trade(i, -30 * WAD) for i in range(1, 5)]
    buyer = trade(9, 10 * WAD)
    p = plan([*sellers, buyer], puddle)
    assert p.split is not None and p.split.net_now == 0
    (s,) = p.settlements
    assert s.net.amount_in == 0
    assert sum(leg.trade.amount_in for leg in s.legs if leg.trade.sell_underlying) == 10 * WAD
    alone = plan([sellers[0]], puddle)  # nothing to match: it cannot trade inside its bound
    assert alone.settlements == () and "oracle bound" in alone.excluded[sellers[0].vault]


def test_more_than_max_legs_go_in_several_settlements_each_vault_once() -> None:
    rng = random.Random(7)
    trades = [trade(i, rng.choice((-1, 1)) * rng.randint(WAD, 5 * WAD)) for i in range(1, 151)]
    p = plan(trades)
    assert len(p.settlements) >= 3
    assert all(len(s.legs) <= MAX_LEGS for s in p.settlements)
    vaults = [leg.vault for s in p.settlements for leg in s.legs]
    assert len(vaults) == len(set(vaults))
    assert set(vaults) | set(p.excluded) == {t.vault for t in trades}


def test_a_split_books_settlement_nets_are_quoted_with_the_samples() -> None:
    """The nets of a book larger than one settlement are known before the quote: quoted
    with the samples, every settlement's swap has its exact quote (no second round)."""
    rng = random.Random(11)
    trades = [trade(i, rng.choice((-1, 1)) * rng.randint(WAD, 5 * WAD)) for i in range(1, 121)]
    sizes = sample_sizes(trades, net_need(trades, COST))
    nets = chunk_nets(trades, CFG.max_legs, COST)
    assert len(nets) >= 2
    for net in nets:
        sizes[net.sell_underlying] = sorted({*sizes.get(net.sell_underlying, []), net.amount_in})
    depth = Pool().depth(sizes)
    p = plan_book(trades, depth, CFG)
    assert len(p.settlements) == len(nets) and not p.excluded
    for s in p.settlements:
        if s.net.amount_in:
            assert depth.curve(s.net.sell_underlying).out_at(s.net.amount_in) is not None
    assert chunk_nets(trades[: CFG.max_legs], CFG.max_legs, COST) == []  # one settlement


def test_a_vault_whose_leg_would_fail_is_left_out_and_the_rest_netted() -> None:
    broke = trade(3, 5 * WAD, loss_available=10**9)  # sizing at 60 bps passes ...
    broke = replace(
        broke, state=replace(broke.state, loss_available=0)
    )  # ... the bucket is empty now
    seller, buyer = trade(1, -8 * WAD), trade(2, 5 * WAD)
    p = plan([seller, buyer, broke])
    assert broke.vault in p.excluded and "loss" in p.excluded[broke.vault]
    assert [t.vault for t in p.solo] == [broke.vault]
    (s,) = p.settlements
    assert set(s.vaults) == {seller.vault, buyer.vault}


def test_a_better_pool_than_the_oracle_keeps_a_buyer_on_its_own_trade() -> None:
    cheap = Pool(weth=10_000 * WAD, usdc=29_000_000 * USDC)  # pool at $2,900, oracle at $3,000
    seller, buyer = trade(1, -5 * WAD), trade(2, 5 * WAD)
    p = plan([seller, buyer], cheap)
    assert buyer.vault in p.excluded and "own DEX" in p.excluded[buyer.vault]


def test_journal_legs_carry_the_state_nonce_and_the_oracle_round() -> None:
    (s,) = plan([trade(1, -2 * WAD), trade(2, WAD)]).settlements
    rows = s.journal_legs()
    assert {r["vault"]: r["state_nonce"] for r in rows} == {
        "0x" + "0" * 39 + "1": 101,
        "0x" + "0" * 39 + "2": 102,
    }
    assert set(rows[0]) == {
        "vault",
        "sell_underlying",
        "amount_in",
        "min_out",
        "payout",
        "state_nonce",
        "oracle_round",
    }
    assert rows[0]["oracle_round"] == 7


def test_dex_curve_bounds_bracket_the_true_output() -> None:
    pool = Pool(weth=500 * WAD, usdc=1_500_000 * USDC)
    sizes = [WAD // 2, WAD, 2 * WAD, 4 * WAD, 8 * WAD]
    curve = pool.depth({True: sizes})
    for a in (WAD // 2, 3 * WAD, 5 * WAD, 7 * WAD):
        true = pool.out(True, a)
        assert curve.sell.lower_bound(a) <= true <= curve.sell.upper_bound(a)


def test_the_first_buyer_is_one_with_room_for_the_net_swaps_positive_slippage() -> None:
    """BookSettlement._pay: the first leg buying a token takes everything left of it, i.e.
    its payout plus the net swap's output above ``net_min_out`` (the keeper's own quote less
    ``net_slippage_bps``). With an unchanged pool that is ~TOL of the net: the vault measures
    what it received and must still pass its direction / overshoot rule, or the whole
    settlement reverts (``Overshoot``). So the large buyer goes first, not the small one."""
    pool = Pool(weth=100_000 * WAD, usdc=300_000_000 * USDC)
    seller, small, big = trade(1, -90 * WAD), trade(2, WAD), trade(3, 150 * WAD)
    p = plan([seller, small, big], pool)
    assert not p.excluded and len(p.settlements) == 1
    (s,) = p.settlements
    assert s.net.amount_in > 0 and not s.net.sell_underlying
    buyers = [leg for leg in s.legs if not leg.trade.sell_underlying]
    assert buyers[0].vault == big.vault  # the first leg buying the underlying
    net_out = pool.out(False, s.net.amount_in)  # the pool as quoted: nothing moved
    paid_first = seller.underlying + net_out - sum(leg.payout for leg in buyers[1:])
    assert paid_first > buyers[0].payout  # it does take the leftover ...
    assert direction_ok(big.deviation_wad, paid_first, big.state)  # ... and its rule admits it


def test_a_first_buyer_without_room_for_the_leftover_is_left_out_of_the_book() -> None:
    """No buyer's overshoot rule admits the leftover: the first one is refused (it trades on
    its own), rather than sent to revert the whole settlement on chain."""
    tight = replace(GUARDS, max_overshoot_wad=0)
    buyers = [trade(i, 40 * WAD, guards=tight) for i in (1, 2)]
    p = plan([trade(3, -10 * WAD), *buyers], Pool(weth=100_000 * WAD, usdc=300_000_000 * USDC))
    assert p.split is None  # every buyer is paid up to its target less the tolerance
    refused = [v for v, why in p.excluded.items() if "first buyer" in why]
    assert len(refused) >= 1 and all(v in {b.vault for b in buyers} for v in refused)


def test_first_buyer_problem_only_concerns_a_buyer_given_a_leftover() -> None:
    (s,) = plan([trade(1, -2 * WAD), trade(2, 3 * WAD)]).settlements
    sell_leg = next(leg for leg in s.legs if leg.trade.sell_underlying)
    buy_leg = next(leg for leg in s.legs if not leg.trade.sell_underlying)
    assert first_buyer_problem(trade(1, -2 * WAD), sell_leg, WAD) == ""
    assert first_buyer_problem(trade(2, 3 * WAD), buy_leg, 0) == ""
    assert "overshoot" in first_buyer_problem(trade(2, 3 * WAD), buy_leg, WAD)
