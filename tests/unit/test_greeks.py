"""Black-Scholes-Merton greeks: finite differences, parity, degenerate inputs, the normal CDF."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from keeper.core.greeks import (
    BLOCK,
    Greeks,
    _bs_block,
    bs_greeks,
    bs_greeks_flat,
    bs_price,
    erf,
    erfc,
    ndtr,
    norm_pdf,
)


def _grid() -> tuple[npt.NDArray[np.float64], ...]:
    """Calls and puts, ITM/ATM/OTM, one day to two years, low and high vol, r = 0 and 5%."""
    spot, t, vol, rate, call = np.meshgrid(
        [70.0, 95.0, 100.0, 105.0, 140.0],
        [1.0 / 365.0, 0.1, 2.0],
        [0.2, 0.8],
        [0.0, 0.05],
        [True, False],
        indexing="ij",
    )
    return spot.ravel(), t.ravel(), vol.ravel(), rate.ravel(), call.ravel()


STRIKE = 100.0


def _close(
    actual: npt.NDArray[Any] | float, expected: npt.NDArray[Any] | float, rtol: float, atol: float
) -> None:
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def test_textbook_values() -> None:
    # Hull ch. 15 example style check: S=K=100, sigma=20%, r=5%, T=1.
    call = bs_greeks(100.0, 100.0, 0.2, 0.05, 1.0, True)
    put = bs_greeks(100.0, 100.0, 0.2, 0.05, 1.0, False)
    assert isinstance(call.price, float)
    assert call.price == pytest.approx(10.450583572185565, rel=1e-12)
    assert put.price == pytest.approx(5.573526022256971, rel=1e-12)
    # d1 = 0.35: delta = N(0.35), gamma = phi(0.35) / (100 * 0.2)
    assert call.delta == pytest.approx(0.5 * math.erfc(-0.35 / math.sqrt(2)), rel=1e-14)
    phi = math.exp(-(0.35**2) / 2) / math.sqrt(2 * math.pi)
    assert call.gamma == pytest.approx(phi / 20.0, rel=1e-13)
    assert call.vega == pytest.approx(100.0 * phi, rel=1e-13)


def test_delta_gamma_match_finite_differences_of_price() -> None:
    spot, t, vol, rate, call = _grid()
    g = bs_greeks(spot, STRIKE, vol, rate, t, call)
    h = 1e-3 * spot * vol * np.sqrt(t)  # small against the price's own scale of variation
    up = bs_price(spot + h, STRIKE, vol, rate, t, call)
    mid = bs_price(spot, STRIKE, vol, rate, t, call)
    down = bs_price(spot - h, STRIKE, vol, rate, t, call)
    _close(g.delta, (up - down) / (2 * h), rtol=1e-5, atol=1e-7)
    # second difference: truncation ~ h^2 * d4V/dS4, rounding ~ eps * V / h^2
    _close(g.gamma, (up - 2 * mid + down) / h**2, rtol=1e-4, atol=1e-6)


def test_vega_theta_match_finite_differences_of_price() -> None:
    spot, t, vol, rate, call = _grid()
    g = bs_greeks(spot, STRIKE, vol, rate, t, call)
    dv = 1e-5
    vega_fd = (
        bs_price(spot, STRIKE, vol + dv, rate, t, call)
        - bs_price(spot, STRIKE, vol - dv, rate, t, call)
    ) / (2 * dv)
    _close(g.vega, vega_fd, rtol=1e-5, atol=1e-6)
    dt = 1e-4 * t
    # theta is dV/d(calendar time) = -dV/d(time to expiry)
    theta_fd = -(
        bs_price(spot, STRIKE, vol, rate, t + dt, call)
        - bs_price(spot, STRIKE, vol, rate, t - dt, call)
    ) / (2 * dt)
    _close(g.theta, theta_fd, rtol=1e-5, atol=1e-5)


def test_put_call_parity_and_common_greeks() -> None:
    spot, t, vol, rate, _ = _grid()
    c = bs_greeks(spot, STRIKE, vol, rate, t, True)
    p = bs_greeks(spot, STRIKE, vol, rate, t, False)
    forward_gap = spot - STRIKE * np.exp(-rate * t)
    _close((c.price - p.price) / spot, forward_gap / spot, rtol=0, atol=1e-14)
    _close(c.delta - p.delta, np.ones_like(spot), rtol=0, atol=1e-14)
    _close(c.gamma, p.gamma, rtol=1e-14, atol=0)
    _close(c.vega, p.vega, rtol=1e-14, atol=0)
    # d/dt of (S - K e^{-r tau}) is -r K e^{-r tau}
    _close(c.theta - p.theta, -rate * STRIKE * np.exp(-rate * t), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("spot", "is_call", "price", "delta"),
    [
        (120.0, True, 20.0, 1.0),
        (80.0, True, 0.0, 0.0),
        (100.0, True, 0.0, 0.5),
        (80.0, False, 20.0, -1.0),
        (120.0, False, 0.0, 0.0),
        (100.0, False, 0.0, -0.5),
    ],
)
@pytest.mark.parametrize("t", [0.0, -0.5])
def test_at_and_after_expiry_is_intrinsic(
    spot: float, is_call: bool, price: float, delta: float, t: float
) -> None:
    g = bs_greeks(spot, 100.0, 0.8, 0.05, t, is_call)
    assert (g.price, g.delta, g.gamma, g.vega, g.theta) == (price, delta, 0.0, 0.0, 0.0)


def test_zero_vol_is_the_deterministic_forward() -> None:
    t, r, k = 0.5, 0.05, 100.0
    disc_k = k * math.exp(-r * t)
    itm_call = bs_greeks(110.0, k, 0.0, r, t, True)
    assert itm_call.price == pytest.approx(110.0 - disc_k, rel=1e-15)
    assert (itm_call.delta, itm_call.gamma) == (1.0, 0.0)
    assert itm_call.theta == pytest.approx(-r * disc_k, rel=1e-15)
    # spot between K e^{-rt} and K: the call is in the money on the forward, the put is not
    between = 0.5 * (disc_k + k)
    c = bs_greeks(between, k, 0.0, r, t, True)
    p = bs_greeks(between, k, 0.0, r, t, False)
    assert c.price == pytest.approx(between - disc_k, rel=1e-15)
    assert (c.delta, p.price, p.delta, p.theta) == (1.0, 0.0, 0.0, 0.0)
    itm_put = bs_greeks(80.0, k, 0.0, r, t, False)
    assert itm_put.price == pytest.approx(disc_k - 80.0, rel=1e-15)
    assert itm_put.delta == -1.0
    assert itm_put.theta == pytest.approx(r * disc_k, rel=1e-15)


def test_zero_vol_matches_the_small_vol_limit() -> None:
    spot = np.array([90.0, 99.0, 101.0, 110.0])
    for call in (True, False):
        zero = bs_greeks(spot, 100.0, 0.0, 0.03, 0.25, call)
        tiny = bs_greeks(spot, 100.0, 1e-6, 0.03, 0.25, call)
        _close(zero.price, tiny.price, rtol=0, atol=1e-9)
        _close(zero.delta, tiny.delta, rtol=0, atol=1e-12)
        _close(zero.theta, tiny.theta, rtol=0, atol=1e-9)
    # exactly at the forward (r = 0, S = K) the delta is 1/2 and vega is the vol -> 0 limit
    atf = bs_greeks(100.0, 100.0, 0.0, 0.0, 0.25, True)
    assert atf.delta == 0.5
    assert atf.vega == pytest.approx(bs_greeks(100.0, 100.0, 1e-9, 0.0, 0.25, True).vega)


def _all_fields(g: Greeks) -> npt.NDArray[np.float64]:
    names = ("price", "delta", "gamma", "vega", "theta")
    return np.stack([np.asarray(getattr(g, f)) for f in names])


def test_no_nan_or_inf_on_degenerate_and_extreme_inputs() -> None:
    spot, t, vol, call = np.meshgrid(
        [1e-6, 1e-3, 1.0, 1e3, 1e6],
        [-1.0, 0.0, 1e-12, 1.0 / 365.0 / 24.0, 1.0, 30.0],
        [0.0, 1e-14, 0.05, 0.8, 5.0],
        [True, False],
        indexing="ij",
    )
    for rate in (-0.02, 0.0, 0.05):
        with np.errstate(over="raise", divide="raise", invalid="raise"):  # nothing leaks out
            g = bs_greeks(spot, 1.0, vol, rate, t, call)
        assert np.all(np.isfinite(_all_fields(g)))
        assert np.all(np.asarray(g.price) >= 0.0)
        assert np.all(np.asarray(g.gamma) >= 0.0)
    # S/K = 1e6 and 1e-6: a deep ITM call is S - K e^{-rt} with delta 1; a deep OTM call is 0
    deep = bs_greeks([1e6, 1e-6], 1.0, 0.8, 0.05, 1.0, True)
    _close(np.asarray(deep.price), np.array([1e6 - math.exp(-0.05), 0.0]), rtol=1e-15, atol=1e-60)
    _close(np.asarray(deep.delta), np.array([1.0, 0.0]), rtol=0, atol=1e-60)
    # zero and negative spots or strikes stay finite too
    odd = bs_greeks([0.0, 1.0, 1.0], [1.0, 0.0, -1.0], 0.5, 0.01, 1.0, [True, False, True])
    assert np.all(np.isfinite(_all_fields(odd)))


def test_vectorised_equals_scalar_elementwise() -> None:
    rng = np.random.default_rng(7)
    n = 300
    spot = 10 ** rng.uniform(1, 4, n)
    strike = spot * np.exp(rng.normal(0, 0.4, n))
    vol = rng.uniform(0.0, 1.5, n)
    rate = rng.uniform(-0.01, 0.08, n)
    t = rng.uniform(-0.05, 2.0, n)
    call = rng.random(n) < 0.5
    vec = bs_greeks(spot, strike, vol, rate, t, call)
    loop = [bs_greeks(*args) for args in zip(spot, strike, vol, rate, t, call, strict=True)]
    for field in ("price", "delta", "gamma", "vega", "theta"):
        expected = np.array([getattr(g, field) for g in loop])
        assert all(isinstance(getattr(g, field), float) for g in loop)
        _close(getattr(vec, field), expected, rtol=1e-13, atol=1e-300)


def test_broadcast_shapes() -> None:
    g = bs_greeks(np.linspace(90, 110, 5)[:, None], np.array([95.0, 105.0]), 0.3, 0.0, 0.5, True)
    assert np.shape(g.price) == (5, 2)
    assert np.shape(g.theta) == (5, 2)
    calls_and_puts = bs_greeks(100.0, 100.0, 0.3, 0.0, 0.5, np.array([True, False]))
    assert np.shape(calls_and_puts.delta) == (2,)


def test_erfc_and_erf_match_math_module() -> None:
    x = np.linspace(-27.0, 27.0, 54_001)
    ref_c = np.array([math.erfc(v) for v in x])
    got_c = np.asarray(erfc(x))
    normal = ref_c > 1e-300  # below that math.erfc returns subnormals with fewer digits
    rel_c = np.abs(got_c[normal] - ref_c[normal]) / ref_c[normal]
    assert rel_c.max() < 5e-15
    ref = np.array([math.erf(v) for v in x])
    nonzero = ref != 0.0
    got = np.asarray(erf(x))
    assert np.max(np.abs(got[nonzero] - ref[nonzero]) / np.abs(ref[nonzero])) < 5e-15
    assert erfc(40.0) == 0.0
    assert erfc(-40.0) == 2.0
    assert erf(1e-300) == pytest.approx(2 / math.sqrt(math.pi) * 1e-300, rel=1e-15)


def test_ndtr_accuracy_tails_and_symmetry() -> None:
    x = np.linspace(-37.5, 37.5, 30_001)
    ref = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    got = np.asarray(ndtr(x))
    normal = ref > 1e-300
    assert np.max(np.abs(got[normal] - ref[normal]) / ref[normal]) < 5e-15
    core = np.abs(x) < 8
    _close(got[core] + np.asarray(ndtr(-x[core])), np.ones(core.sum()), rtol=0, atol=3e-16)
    assert ndtr(0.0) == 0.5
    assert ndtr(np.inf) == 1.0
    assert ndtr(-np.inf) == 0.0
    assert norm_pdf(0.0) == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-15)


def test_blocked_evaluation_of_long_inputs_matches_one_block() -> None:
    """Inputs longer than BLOCK are cut into blocks; the result must not depend on it."""
    rng = np.random.default_rng(13)
    n = 2 * BLOCK + 123
    spot = 10 ** rng.uniform(1, 4, n)
    strike = spot * np.exp(rng.normal(0, 0.5, n))
    vol = np.where(rng.random(n) < 0.05, 0.0, rng.uniform(0.05, 1.5, n))
    rate = rng.uniform(0.0, 0.08, n)
    t = rng.uniform(-0.1, 2.0, n)  # ~5% expired
    call = rng.random(n) < 0.5
    blocked = bs_greeks_flat(spot, strike, vol, rate, t, call)
    whole = _bs_block(spot, strike, vol, rate, t, call)
    for field in ("price", "delta", "gamma", "vega", "theta"):
        np.testing.assert_array_equal(getattr(blocked, field), getattr(whole, field))
    for i in rng.choice(n, 40, replace=False):
        one = bs_greeks(spot[i], strike[i], vol[i], rate[i], t[i], call[i])
        assert one.price == pytest.approx(blocked.price[i], rel=1e-13, abs=1e-300)
        assert one.delta == pytest.approx(blocked.delta[i], rel=1e-13, abs=1e-300)


# --- realised vol ----------------------------------------------------------------


def test_ewma_variance_tracks_the_true_vol_of_gbm_returns() -> None:
    from keeper.core.greeks import ewma_vol_path

    rng = np.random.default_rng(8)
    step, sigma, n = 3600.0, 0.6, 24 * 60
    dt = step / (365 * 24 * 3600)
    shocks = sigma * math.sqrt(dt) * rng.standard_normal((n, 200))
    spot = 3000.0 * np.exp(np.vstack([np.zeros((1, 200)), np.cumsum(shocks, axis=0)]))
    vol = ewma_vol_path(spot, step, 72 * 3600.0, start_vol=1.2)
    assert vol.shape == spot.shape and np.all(vol[0] == 1.2)
    # after ~20 half-lives the prior is forgotten: the estimate centres on the true vol
    assert float(np.mean(vol[-1])) == pytest.approx(sigma, rel=0.03)
    assert float(np.std(vol[-1])) < 0.1 * sigma


def test_ewma_variance_weighs_rounds_by_the_time_they_cover() -> None:
    from keeper.core.greeks import ewma_variance

    half_life = 3600.0
    # one return over a full half-life gets weight 1/2, and dt <= 0 changes nothing
    year = 365 * 24 * 3600
    rate = 0.01**2 / (half_life / year)
    got = ewma_variance(np.array([0.25, 0.25]), 0.01, np.array([half_life, 0.0]), half_life)
    np.testing.assert_allclose(got, [0.5 * 0.25 + 0.5 * rate, 0.25])


def test_ewma_variance_of_one_vault_is_the_array_update() -> None:
    from keeper.core.greeks import ewma_variance, ewma_variance_one

    rng = np.random.default_rng(5)
    var = rng.uniform(0.01, 1.0, 64)
    ret = rng.normal(0.0, 0.02, 64)
    dt = np.concatenate([rng.uniform(1.0, 7_200.0, 60), [0.0, -5.0, 1e-9, 86_400.0 * 30]])
    want = ewma_variance(var, ret, dt, 3_600.0)
    got = [
        ewma_variance_one(float(v), float(r), float(d), 3_600.0)
        for v, r, d in zip(var, ret, dt, strict=True)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0.0)
    assert ewma_variance_one(0.3, 0.05, 0.0, 3_600.0) == 0.3  # no time covered: unchanged
