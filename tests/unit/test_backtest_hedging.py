"""The backtester's hedging accounting against the textbook (Hull ch. 19): with no costs the
hedge cost's spread falls as the square root of the rebalancing interval and its mean tends
to the Black-Scholes price."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from keeper.backtest.book import book_value
from keeper.backtest.costs import CostModel
from keeper.backtest.engine import Market, simulate
from keeper.backtest.policies import ReferencePolicy, build_policy
from keeper.backtest.scenario import (
    CostSettings,
    PolicyFamily,
    PolicySpec,
    Scenario,
    VaultSettings,
    load_scenario,
)
from keeper.backtest.study import build_market, run_study

YEAR = 365 * 86400.0


def textbook(n_paths: int, step: str, intervals: tuple[float, ...]) -> Scenario:
    """Hull's short call with zero costs, time-based hedging at ``intervals`` steps."""
    base = load_scenario("zero_cost_textbook")
    n_steps = round(base.horizon_seconds / {"1w/4": 151200.0, "1w/32": 18900.0}[step])
    spec = PolicySpec("time", PolicyFamily.TIME_BASED, None, intervals)
    return replace(
        base,
        n_paths=n_paths,
        step_seconds=base.horizon_seconds / n_steps,
        n_steps=n_steps,
        policies=(spec,),
    )


def ratios(scenario: Scenario) -> dict[float | None, float]:
    result = run_study(scenario)
    return {
        run.measures.param: run.measures.hedge_cost_std_ratio for run in result.policies[0].sweep
    }


def test_spread_falls_as_the_square_root_of_the_interval() -> None:
    by_interval = ratios(textbook(600, "1w/4", (1, 4, 16)))
    assert by_interval[4] / by_interval[1] == pytest.approx(2.0, rel=0.15)
    assert by_interval[16] / by_interval[4] == pytest.approx(2.0, rel=0.2)


def test_spread_tends_to_zero_with_finer_hedging() -> None:
    by_interval = ratios(textbook(300, "1w/32", (1, 8, 32)))
    assert by_interval[1] < by_interval[8] < by_interval[32]
    assert by_interval[1] < 0.05  # every 0.6 days over 20 weeks: ~0.1 * sqrt(1/8)


def test_mean_hedge_cost_tends_to_the_black_scholes_price() -> None:
    scenario = textbook(1500, "1w/32", (1,))
    result = run_study(scenario)
    measures = result.policies[0].sweep[0].measures
    assert result.option_price == pytest.approx(240_000, rel=0.01)  # Hull: about $240,000
    assert abs(measures.hedge_cost_mean - result.option_price) < 4 * measures.hedge_cost_stderr
    assert measures.hedge_cost_stderr < 0.01 * result.option_price


def test_no_hedge_owes_the_discounted_payoff_and_every_step_matches_interval_one() -> None:
    scenario = replace(
        textbook(200, "1w/4", (1,)),
        policies=(
            PolicySpec("none", PolicyFamily.NO_HEDGE, None, ()),
            PolicySpec("each", PolicyFamily.EVERY_STEP, None, ()),
            PolicySpec("time", PolicyFamily.TIME_BASED, 1.0, ()),
        ),
    )
    build = build_market(scenario)
    none = simulate(
        build_policy("none", PolicyFamily.NO_HEDGE, None, scenario.vault, 1.0, 0.0), build.market
    )
    discount = math.exp(-scenario.book.rate * scenario.horizon_seconds / YEAR)
    np.testing.assert_allclose(none.hedge_cost, discount * build.market.payoff)
    assert none.rebalances.sum() == 0
    each = simulate(ReferencePolicy("each", PolicyFamily.EVERY_STEP, hedges=True), build.market)
    timed = simulate(
        build_policy("t", PolicyFamily.TIME_BASED, 1.0, scenario.vault, scenario.step_seconds, 0.0),
        build.market,
    )
    np.testing.assert_allclose(each.hedge_cost, timed.hedge_cost, rtol=1e-9, atol=1e-6)


def _two_step_market(spot_path: list[float], costs: CostSettings) -> Market:
    """One path, two decision steps, a short call of 1 unit with hand-set greeks."""
    spot = np.array(spot_path)[:, None]
    return Market(
        spot=spot,
        option_delta=np.array([[-0.5], [-0.8]]),
        option_gamma=np.array([[-0.01], [-0.01]]),
        gas_quote=np.array([[2.0], [3.0]]),
        base_fee_gwei=np.zeros((3, 1)),
        payoff=np.array([max(spot_path[-1] - 100.0, 0.0)]),
        t_years_left=np.array([2.0, 1.0]),
        discount=np.array([1.0, 0.9, 0.8]),
        step_seconds=1.0,
        vol=0.5,
        target_delta=0.0,
        costs=CostModel(costs),
    )


def test_hedge_cost_is_the_present_value_of_every_cash_flow() -> None:
    costs = CostSettings(0, 0, 1, 0.0, dex_fee_bps=10.0, slippage_bps_per_unit=100.0)
    market = _two_step_market([100.0, 110.0, 120.0], costs)
    out = simulate(ReferencePolicy("each", PolicyFamily.EVERY_STEP, hedges=True), market)
    # step 0: buy 0.5 at 100; step 1: buy 0.3 at 110; expiry: owe 20, hold 0.8 worth 96.
    fees = [10e-4 * 0.5 * 100, 10e-4 * 0.3 * 110]
    slips = [100e-4 * 0.5 * 0.5 * 100, 100e-4 * 0.3 * 0.3 * 110]
    expected = (
        1.0 * (0.5 * 100 + 2.0 + fees[0] + slips[0])
        + 0.9 * (0.3 * 110 + 3.0 + fees[1] + slips[1])
        + 0.8 * (20.0 - 0.8 * 120)
    )
    assert out.hedge_cost[0] == pytest.approx(expected)
    assert out.gas[0] == pytest.approx(2.0 + 0.9 * 3.0)
    assert out.fees[0] == pytest.approx(fees[0] + 0.9 * fees[1])
    assert out.slippage[0] == pytest.approx(slips[0] + 0.9 * slips[1])
    assert out.rebalances[0] == 2
    assert out.deviation_sq_mean[0] == pytest.approx(0.3**2)  # step 1, before the decision


def test_time_based_rebalances_every_n_steps() -> None:
    scenario = textbook(50, "1w/4", (5,))
    build = build_market(scenario)
    policy = build_policy(
        "t", PolicyFamily.TIME_BASED, 5.0, VaultSettings(0.0, 1e12), scenario.step_seconds, 0.0
    )
    out = simulate(policy, build.market)
    # steps 0, 5, ..., 75; a deep out-of-the-money path may skip a dust-sized trade
    assert out.rebalances.max() == 16
    assert np.median(out.rebalances) == 16
    assert np.flatnonzero(out.trace.rebalanced)[:3].tolist() in ([0, 5, 10], [0])


def test_the_book_value_is_the_writers_liability() -> None:
    scenario = load_scenario("zero_cost_textbook")
    value = book_value(scenario.book, scenario.book.spot, scenario.horizon_seconds / YEAR)
    assert value == pytest.approx(-240_000, rel=0.01)


def test_greeks_at_the_realised_vol_follow_each_path() -> None:
    from keeper.backtest.study import with_overrides

    base = load_scenario("eth_30d_short_call")
    small = replace(base, n_paths=50, n_steps=240, step_seconds=base.horizon_seconds / 240)
    calm = replace(small, paths=replace(small.paths, vol=0.3))  # realised 30%, implied 80%
    implied = build_market(calm).market
    realised = build_market(with_overrides(calm, realized_vol_half_life=12 * 3600.0)).market
    assert implied.greeks_vol is None
    assert realised.greeks_vol is not None
    assert realised.greeks_vol[0, 0] == pytest.approx(0.8)  # starts at the implied vol
    assert float(np.median(realised.greeks_vol[-1])) == pytest.approx(0.3, rel=0.2)
    # a lower vol concentrates gamma near the strike: the books differ
    assert not np.allclose(realised.option_gamma[-1], implied.option_gamma[-1])
