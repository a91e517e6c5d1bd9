"""No-trade bands: the gas-adjusted optimum, its limits and edge cases, the other policies."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from keeper.core.bands import (
    DUST_UNITS,
    BandInputs,
    FixedThreshold,
    GasAdjustedBand,
    TimeBased,
    expected_wait_years,
    gas_cost_quote,
    lookup_band,
    minimise_scaled_band,
    optimal_band,
    policy_for,
    policy_for_params,
    proportional_cost,
    scaled_band_cost,
    trigger_move,
)
from keeper.core.greeks import FloatArray, bs_greeks
from keeper.core.types import PolicyKind, VaultParams
from keeper.errors import ConfigError

SPOT = 3000.0
GAMMA = -0.06  # short ~100 ETH of one-month ATM calls at 80% vol
RA = 1e-4  # risk aversion per USD
K = 12.0  # USD of gas per rebalance
LAM = 5e-4  # 5 bps


def _inputs(**overrides: object) -> BandInputs:
    base: dict[str, object] = {
        "deviation": 0.0,
        "gamma": GAMMA,
        "spot": SPOT,
        "vol": 0.8,
        "t_years": 30 / 365,
        "risk_aversion": RA,
        "fixed_cost": K,
        "proportional_cost": LAM,
        "seconds_since_rebalance": 600.0,
    }
    base.update(overrides)
    return BandInputs(**base)  # type: ignore[arg-type]


R = RA / 2  # the variance penalty r = gamma_ra / 2
IMPACT = 0.5e-4  # 0.5 bps of value per unit traded


def _rate(outer: FloatArray, inner: FloatArray, k: float, b: float, c: float) -> FloatArray:
    """The unscaled cost rate / (sigma S)^2 of the module docstring, written out directly."""
    d = outer - inner
    result: FloatArray = (
        GAMMA**2 * (k + b * d + c * d * d) / (outer**2 - inner**2) + R * (outer**2 + inner**2) / 6
    )
    return result


def test_band_minimises_the_unscaled_cost_rate_on_a_grid() -> None:
    """Independent of the scaling and the table: brute force over (H, h) at the ATM example."""
    b, c = LAM * SPOT, IMPACT * SPOT
    outer, inner = np.meshgrid(np.linspace(0.05, 20, 1600), np.linspace(0.0, 19.9, 1600))
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(outer > inner, _rate(outer, inner, K, b, c), np.inf)
    at = np.unravel_index(np.argmin(rate), rate.shape)
    got_outer, got_inner = optimal_band(GAMMA, RA, K, b, c)
    assert float(got_outer) == pytest.approx(outer[at], abs=0.02)
    assert float(got_inner) == pytest.approx(inner[at], abs=0.02)
    assert 0.0 < float(got_inner) < 0.5 * float(got_outer)  # an inner point, not the target


def test_table_lookup_matches_the_direct_minimum_off_the_grid() -> None:
    rng = np.random.default_rng(11)
    beta, chi = 10 ** rng.uniform(-3.9, 5.9, 400), 10 ** rng.uniform(-3.9, 5.9, 400)
    u, w = lookup_band(beta, chi)
    u_direct, w_direct = minimise_scaled_band(beta, chi)
    best = scaled_band_cost(u_direct, w_direct, beta, chi)
    # the cost at the looked-up point is within 0.01% of the optimum (and never below it)
    looked = scaled_band_cost(u, w, beta, chi)
    assert np.all(looked >= best * (1 - 1e-12))
    assert np.max(looked / best - 1) < 1e-4
    np.testing.assert_allclose(u, u_direct, rtol=2e-2)


def test_closed_form_limits_gas_only_and_whalley_wilmott() -> None:
    gamma = np.array([1e-4, 0.01, 0.06, 2.0])
    outer, inner = optimal_band(gamma, RA, K, 0.0, 0.0)
    np.testing.assert_allclose(outer, (12 * K * gamma**2 / RA) ** 0.25, rtol=1e-4)
    assert np.all(inner <= 1e-3 * outer)  # gas only: back to the target
    outer, inner = optimal_band(gamma, RA, 0.0, LAM * SPOT, 0.0)
    whalley_wilmott = (1.5 * LAM * SPOT * gamma**2 / RA) ** (1 / 3)
    np.testing.assert_allclose(outer, whalley_wilmott, rtol=2e-2)  # fee only: to the edge
    np.testing.assert_allclose(inner / outer, 1.0, rtol=2e-2)


def test_every_cost_moves_the_band_the_right_way() -> None:
    b, c = LAM * SPOT, IMPACT * SPOT
    base_outer, base_inner = (float(x) for x in optimal_band(GAMMA, RA, K, b, c))
    more_gas = optimal_band(GAMMA, RA, 4 * K, b, c)
    assert float(more_gas[0]) > base_outer and float(more_gas[1]) < base_inner * 1.5
    more_fee = optimal_band(GAMMA, RA, K, 4 * b, c)
    assert float(more_fee[0]) > base_outer and float(more_fee[1]) > base_inner
    more_impact = optimal_band(GAMMA, RA, K, b, 4 * c)  # impact favours smaller trades
    assert float(more_impact[1]) - float(more_impact[0]) > base_inner - base_outer


def test_derivation_constants_by_simulation() -> None:
    """From +-h, x leaves [-H, H] after (H^2 - h^2)/v on average, and over the renewal cycle
    E[x^2] = (H^2 + h^2)/6 (renewal-reward Monte Carlo).

    Discrete monitoring overshoots the barrier; Broadie-Glasserman-Kou (1997) shift it by
    0.5826 sd(step), which we apply.
    """
    rng = np.random.default_rng(5)
    n, outer, step_sd = 4000, 1.0, 1.0 / 30.0  # v = step_sd^2 per step
    for inner in (0.0, 0.4):
        x = np.full(n, inner)
        total_steps = 0
        sum_x2 = 0.0
        while x.size:
            x = x + step_sd * rng.standard_normal(x.size)
            total_steps += x.size
            x = x[np.abs(x) < outer]  # exited paths trade back to +-h: the cycle is over
            sum_x2 += float(np.dot(x, x))
        eff = outer + 0.5826 * step_sd
        assert total_steps / n * step_sd**2 == pytest.approx(eff**2 - inner**2, rel=0.05)
        assert sum_x2 / total_steps == pytest.approx((eff**2 + inner**2) / 6, rel=0.05)


def test_the_last_trade_test_skips_trades_the_time_left_cannot_repay() -> None:
    band = GasAdjustedBand(floor=0.0, hard_limit=20.0)
    base = band.evaluate(_inputs())
    dev = 1.2 * float(base.half_width)
    taus = np.array([30.0, 1.0, 1 / 24, 1 / 1440]) / 365
    res = band.evaluate(_inputs(deviation=dev, t_years=taus))
    h = res.inner
    risk = R * (0.8 * SPOT) ** 2 * (dev**2 - h**2) * taus
    cost = K + LAM * SPOT * (dev - h)
    np.testing.assert_array_equal(res.act, risk > cost)
    assert res.act[0] and not res.act[-1]  # a minute before expiry the trade is not worth it
    urgent = band.evaluate(_inputs(deviation=25.0, t_years=taus))
    assert np.all(urgent.act & urgent.urgent)  # past the hard limit it always goes


def test_a_trade_leaves_the_inner_target() -> None:
    band = GasAdjustedBand(floor=0.0, hard_limit=20.0)
    res = band.evaluate(_inputs(deviation=np.array([-12.0, 0.5, 12.0])))
    assert 0.0 < float(res.inner[0]) < float(res.half_width[0])
    np.testing.assert_allclose(res.trade_to, [-res.inner[0], 0.5, res.inner[2]])
    fixed = FixedThreshold(threshold=1.0, hard_limit=20.0).evaluate(_inputs(deviation=3.0))
    assert float(fixed.inner) == 0.0 and float(fixed.trade_to) == 0.0


# --- comparative statics ---------------------------------------------------------


def test_band_widens_with_gas_and_with_proportional_cost() -> None:
    band = GasAdjustedBand(floor=0.0, hard_limit=math.inf)
    ks = np.array([0.0, 0.5, 2.0, 12.0, 50.0, 400.0])
    by_gas = band.evaluate(_inputs(fixed_cost=ks)).half_width
    assert np.all(np.diff(by_gas) > 0)
    lams = np.array([0.0, 1e-4, 5e-4, 3e-3, 1e-2])
    by_fee = band.evaluate(_inputs(proportional_cost=lams)).half_width
    assert np.all(np.diff(by_fee) > 0)
    by_risk = band.evaluate(_inputs(risk_aversion=np.array([1e-6, 1e-5, 1e-4, 1e-3]))).half_width
    assert np.all(np.diff(by_risk) < 0)


def test_band_sits_on_the_floor_as_costs_vanish() -> None:
    band = GasAdjustedBand(floor=0.25, hard_limit=50.0)
    costs = np.array([1e-3, 1e-6, 1e-9, 0.0])
    res = band.evaluate(_inputs(fixed_cost=costs, proportional_cost=costs * 1e-4))
    assert res.half_width[0] > 0.25
    np.testing.assert_array_equal(res.half_width[1:], 0.25)
    assert float(optimal_band(GAMMA, RA, 0.0, 0.0, 0.0)[0]) == 0.0


def test_band_widens_in_delta_but_trigger_move_narrows_with_gamma() -> None:
    band = GasAdjustedBand(floor=0.0, hard_limit=math.inf)
    gammas = np.geomspace(1e-3, 10.0, 9)
    for k, lam, h_slope in ((K, 0.0, 1 / 2), (0.0, LAM, 2 / 3), (K, LAM, None)):
        res = band.evaluate(_inputs(gamma=-gammas, fixed_cost=k, proportional_cost=lam))
        assert np.all(np.diff(res.half_width) > 0)  # wider in delta units
        assert np.all(np.diff(res.spot_move) < 0)  # but a smaller spot move triggers it
        np.testing.assert_allclose(res.spot_move, res.half_width / gammas, rtol=1e-15)
        if h_slope is not None:
            slopes = np.diff(np.log(res.half_width)) / np.diff(np.log(gammas))
            np.testing.assert_allclose(slopes, h_slope, rtol=1e-10)
            move_slopes = np.diff(np.log(res.spot_move)) / np.diff(np.log(gammas))
            np.testing.assert_allclose(move_slopes, h_slope - 1, rtol=1e-10)


def test_vol_and_expiry_act_through_gamma() -> None:
    """Closer to expiry at the money: more gamma, a wider delta band, a smaller trigger move."""
    t = np.array([60.0, 30.0, 7.0, 1.0]) / 365
    gamma = -100.0 * np.asarray(bs_greeks(SPOT, SPOT, 0.8, 0.05, t, True).gamma)
    res = GasAdjustedBand(floor=0.0, hard_limit=math.inf).evaluate(_inputs(gamma=gamma, t_years=t))
    assert np.all(np.diff(res.half_width) > 0)
    assert np.all(np.diff(res.spot_move) < 0)


# --- acting, urgency, edge cases -------------------------------------------------


def test_act_and_urgent_follow_the_band_and_hard_limit() -> None:
    band = GasAdjustedBand(floor=0.1, hard_limit=20.0)
    h = float(band.evaluate(_inputs()).half_width)
    assert 0.1 < h < 20.0
    dev = np.array([0.0, 0.5 * h, -0.99 * h, 1.01 * h, -1.5 * h, 20.5, -25.0])
    res = band.evaluate(_inputs(deviation=dev))
    np.testing.assert_array_equal(res.act, [False, False, False, True, True, True, True])
    np.testing.assert_array_equal(res.urgent, [False] * 5 + [True, True])
    np.testing.assert_array_equal(res.act, np.abs(dev) > res.half_width)


def test_hard_limit_caps_a_wide_band() -> None:
    res = GasAdjustedBand(floor=0.1, hard_limit=2.0).evaluate(
        _inputs(deviation=np.array([1.9, 2.1]), fixed_cost=1e6)
    )
    np.testing.assert_array_equal(res.half_width, 2.0)
    np.testing.assert_array_equal(res.act, [False, True])
    np.testing.assert_array_equal(res.urgent, [False, True])


def _finite_or_inf_no_nan(*arrays: npt.NDArray[np.float64]) -> bool:
    return not any(np.isnan(a).any() for a in arrays)


def test_zero_gamma_acts_past_the_floor() -> None:
    band = GasAdjustedBand(floor=0.3, hard_limit=10.0)
    # 2.0 rather than just above the floor: the last-trade test wants the risk to repay the gas
    res = band.evaluate(_inputs(gamma=0.0, deviation=np.array([0.2, 2.0, 11.0])))
    np.testing.assert_array_equal(res.half_width, 0.3)
    np.testing.assert_array_equal(res.act, [False, True, True])
    np.testing.assert_array_equal(res.spot_move, math.inf)  # no spot move changes the delta
    assert float(optimal_band(0.0, RA, K, LAM * SPOT, 0.0)[0]) == 0.0


def test_zero_risk_aversion_leaves_only_the_hard_limit() -> None:
    band = GasAdjustedBand(floor=0.3, hard_limit=10.0)
    res = band.evaluate(_inputs(risk_aversion=0.0, deviation=np.array([9.0, 10.5])))
    np.testing.assert_array_equal(res.half_width, 10.0)
    np.testing.assert_array_equal(res.act, res.urgent)
    np.testing.assert_array_equal(res.act, [False, True])
    assert float(optimal_band(GAMMA, 0.0, K, LAM * SPOT, 0.0)[0]) == math.inf


def test_no_nan_or_float_warning_on_degenerate_inputs() -> None:
    zero_vol_gamma = -100.0 * np.asarray(
        bs_greeks(SPOT, np.array([2500.0, 3000.0, 3500.0]), 0.0, 0.05, 0.1, True).gamma
    )
    policies = (
        GasAdjustedBand(floor=0.0, hard_limit=math.inf),
        GasAdjustedBand(floor=0.1, hard_limit=20.0),
        FixedThreshold(threshold=1.0, hard_limit=20.0),
        TimeBased(interval_seconds=3600.0, hard_limit=20.0),
    )
    for k, lam in ((0.0, 0.0), (K, LAM)):
        grid = BandInputs(
            deviation=np.array([0.0, 1.0, -30.0])[:, None, None],
            gamma=np.concatenate([zero_vol_gamma, [0.0, -1e-300, 5.0, 1e200]])[None, :, None],
            spot=SPOT,
            vol=0.0,
            t_years=0.0,
            risk_aversion=np.array([0.0, 1e-300, RA, 1e300])[None, None, :],
            fixed_cost=k,
            proportional_cost=lam,
            seconds_since_rebalance=0.0,
        )
        for policy in policies:
            with np.errstate(over="raise", divide="raise", invalid="raise"):
                res = policy.evaluate(grid)
            assert res.half_width.shape == (3, 7, 4)
            assert _finite_or_inf_no_nan(res.half_width, res.spot_move)
            assert _finite_or_inf_no_nan(res.inner, res.trade_to)
            outside = np.abs(grid.deviation) > res.half_width
            if isinstance(policy, GasAdjustedBand):  # the last-trade test may hold it back
                assert not np.any(res.act & ~outside)
            else:
                np.testing.assert_array_equal(res.act, outside)


def test_expected_wait_and_trigger_move() -> None:
    res = GasAdjustedBand(floor=0.0, hard_limit=math.inf).evaluate(_inputs())
    h = float(res.half_width)
    assert float(expected_wait_years(h, GAMMA, SPOT, 0.8)) == pytest.approx(
        h**2 / (GAMMA * 0.8 * SPOT) ** 2, rel=1e-15
    )
    assert float(expected_wait_years(h, 0.0, SPOT, 0.8)) == math.inf
    assert float(trigger_move(h, GAMMA)) == pytest.approx(h / abs(GAMMA), rel=1e-15)
    assert float(res.spot_move) == float(trigger_move(h, GAMMA))
    assert float(trigger_move(res, GAMMA)) == float(res.spot_move)


# --- the other policies ----------------------------------------------------------


def test_fixed_threshold() -> None:
    res = FixedThreshold(threshold=1.5, hard_limit=10.0).evaluate(
        _inputs(deviation=np.array([1.4, -1.6, 12.0]), fixed_cost=1e9)  # costs are ignored
    )
    np.testing.assert_array_equal(res.half_width, 1.5)
    np.testing.assert_array_equal(res.act, [False, True, True])
    np.testing.assert_array_equal(res.urgent, [False, False, True])


def test_time_based() -> None:
    policy = TimeBased(interval_seconds=3600.0, hard_limit=10.0)
    since = np.array([3599.0, 3600.0, 7200.0, 10.0, 7200.0])
    dev = np.array([5.0, 5.0, 1e-12, 10.5, -0.01])
    res = policy.evaluate(_inputs(deviation=dev, seconds_since_rebalance=since))
    np.testing.assert_array_equal(res.act, [False, True, False, True, True])
    np.testing.assert_array_equal(res.urgent, [False, False, False, True, False])
    np.testing.assert_array_equal(res.half_width, [10.0, DUST_UNITS, DUST_UNITS, 10.0, DUST_UNITS])


def test_policy_for_dispatch() -> None:
    band = policy_for(PolicyKind.GAS_ADJUSTED_BAND, 0.0, 0.2, 30.0)
    assert band == GasAdjustedBand(floor=0.2, hard_limit=30.0)
    fixed = policy_for(PolicyKind.FIXED_THRESHOLD, 2.0, 0.2, 30.0)
    assert isinstance(fixed, FixedThreshold) and float(fixed.threshold) == 2.0  # type: ignore[arg-type]
    floored = policy_for(PolicyKind.FIXED_THRESHOLD, 0.05, 0.2, 30.0)
    assert isinstance(floored, FixedThreshold) and float(floored.threshold) == 0.2  # type: ignore[arg-type]
    timed = policy_for(PolicyKind.TIME_BASED, 900.0, 0.0, 30.0)
    assert isinstance(timed, TimeBased)
    assert timed.interval_seconds == 900.0 and float(timed.dust) == DUST_UNITS  # type: ignore[arg-type]
    # one policy for a group of vaults sharing the kind: per-vault params
    group = policy_for(
        PolicyKind.FIXED_THRESHOLD, np.array([0.05, 2.0]), np.array([0.2, 0.1]), 30.0
    )
    res = group.evaluate(_inputs(deviation=np.array([0.15, 1.9])))
    np.testing.assert_array_equal(res.half_width, [0.2, 2.0])
    np.testing.assert_array_equal(res.act, [False, False])
    with pytest.raises(ConfigError, match="policy"):
        policy_for(7, 0.0, 0.0, 1.0)  # type: ignore[arg-type]


def test_policy_for_params_converts_wads() -> None:
    def params(kind: PolicyKind, param: int) -> VaultParams:
        return VaultParams(
            implied_vol_wad=8 * 10**17,
            risk_free_rate_wad=5 * 10**16,
            target_delta_wad=0,
            band_floor_wad=10**17,
            hard_limit_wad=25 * 10**18,
            risk_aversion_wad=10**14,
            policy=kind,
            policy_param=param,
        )

    assert policy_for_params(params(PolicyKind.GAS_ADJUSTED_BAND, 0)) == GasAdjustedBand(0.1, 25.0)
    fixed = policy_for_params(params(PolicyKind.FIXED_THRESHOLD, 3 * 10**18))
    assert isinstance(fixed, FixedThreshold) and float(fixed.threshold) == 3.0  # type: ignore[arg-type]
    timed = policy_for_params(params(PolicyKind.TIME_BASED, 1800))
    assert isinstance(timed, TimeBased) and timed.interval_seconds == 1800.0


# --- costs -----------------------------------------------------------------------


def test_cost_helpers() -> None:
    # 200k gas at 20 gwei base + 1 gwei tip, ETH at 3000: 0.0042 ETH = 12.6 USD
    assert gas_cost_quote(200_000, 20 * 10**9, 10**9, 3000.0) == pytest.approx(12.6, rel=1e-14)
    k = gas_cost_quote(200_000, np.array([10e9, 20e9, 40e9]), 1e9, 3000.0)
    assert isinstance(k, np.ndarray) and np.all(np.diff(k) > 0)
    # 5 bps fee + 2 bps per ETH of impact on a 3 ETH trade = 11 bps
    assert proportional_cost(5.0, 2.0, -3.0) == pytest.approx(11e-4, rel=1e-14)
    np.testing.assert_allclose(proportional_cost(5.0, 2.0, np.array([0.0, 1.0])), [5e-4, 7e-4])


def test_results_are_owned_arrays_of_the_broadcast_shape() -> None:
    scalar = GasAdjustedBand(floor=0.1, hard_limit=5.0).evaluate(_inputs(deviation=1.0))
    for arr in (scalar.half_width, scalar.act, scalar.urgent, scalar.spot_move):
        assert isinstance(arr, np.ndarray) and arr.shape == ()
    # one input varies: every output has its shape and can be written to (no broadcast views)
    res = FixedThreshold(threshold=1.0, hard_limit=5.0).evaluate(
        _inputs(seconds_since_rebalance=np.zeros(4))
    )
    for arr in (res.half_width, res.act, res.urgent, res.spot_move):
        assert arr.shape == (4,) and arr.flags.writeable


def test_the_gas_timing_rule_waits_out_a_spike_unless_the_risk_is_large() -> None:
    band = GasAdjustedBand(floor=0.0, hard_limit=20.0)
    ra, usual, spike = 10 * RA, K, 8 * K
    t_half = 2 / (24 * 365)  # gas halves its log excess in 2 hours
    outer = float(band.evaluate(_inputs(fixed_cost=spike, risk_aversion=ra)).half_width)
    devs = np.array([1.05 * outer, 19.5])
    common = {"deviation": devs, "fixed_cost": spike, "risk_aversion": ra}
    timed = band.evaluate(_inputs(**common, reference_fixed_cost=usual, gas_half_life_years=t_half))
    assert band.evaluate(_inputs(**common)).act.all()
    # just outside the band the spike's excess gas outweighs 2 h of risk; far outside it does not
    np.testing.assert_array_equal(timed.act, [False, True])
    risk = ra / 2 * (0.8 * SPOT) ** 2 * (devs**2 - timed.inner**2) * t_half
    np.testing.assert_array_equal(timed.act, risk >= spike - math.sqrt(spike * usual))
    # at the usual gas the rule never waits
    calm = {"deviation": devs, "risk_aversion": ra}
    np.testing.assert_array_equal(
        band.evaluate(_inputs(**calm, reference_fixed_cost=K, gas_half_life_years=t_half)).act,
        band.evaluate(_inputs(**calm)).act,
    )


def test_the_lower_bound_never_exceeds_the_band() -> None:
    rng = np.random.default_rng(4)
    n = 4000
    band = GasAdjustedBand(floor=0.05, hard_limit=math.inf)
    inputs = _inputs(
        gamma=10 ** rng.uniform(-5, 1, n),
        fixed_cost=10 ** rng.uniform(-3, 3, n) * (rng.random(n) < 0.9),
        proportional_cost=10 ** rng.uniform(-6, -2, n),
        impact_per_unit=10 ** rng.uniform(-7, -3, n),
        risk_aversion=10 ** rng.uniform(-7, -2, n),
    )
    assert np.all(band.lower_bound(inputs) <= band.evaluate(inputs).half_width)
