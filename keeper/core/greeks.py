"""Black-Scholes-Merton prices and greeks, vectorised over numpy arrays.

Formulas: J. C. Hull, *Options, Futures, and Other Derivatives*, ch. 15 (the Black-Scholes-Merton
model, no dividends) and ch. 19 (the Greek letters). Every function accepts scalars or arrays that
broadcast together and never loops over elements in Python.

The normal CDF is built on W. J. Cody's rational Chebyshev approximations of erf/erfc
(W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969)
631-637; the coefficients are those of his CALERF routine), so no scipy is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
FloatOrArray = float | FloatArray

SECONDS_PER_YEAR: Final = 365 * 24 * 3600
"""Year used to turn seconds to expiry into ``t_years`` (ACT/365)."""

BLOCK: Final = 32_768
"""Elements per block in :func:`bs_greeks_flat`: cache-sized temporaries run ~2x faster."""

MIN_STDEV: Final = 1e-12
"""Below this total standard deviation ``vol * sqrt(t)`` an option is priced as deterministic."""

_INV_SQRT_PI: Final = 1.0 / math.sqrt(math.pi)
_INV_SQRT_2PI: Final = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT2: Final = math.sqrt(2.0)
_ERFC_ZERO_BEYOND: Final = 30.0  # erfc(30) underflows to 0.0 in double precision

# Cody's coefficients, written as polynomials with the highest degree first.
# |x| <= 0.46875: erf(x) = x * P1(x^2) / Q1(x^2)
_P1: Final = (
    1.85777706184603153e-1,
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
)
_Q1: Final = (
    1.0,
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
# 0.46875 < y <= 4: erfc(y) = exp(-y^2) * P2(y) / Q2(y)
_P2: Final = (
    2.15311535474403846e-8,
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
)
_Q2: Final = (
    1.0,
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
# y > 4, z = 1/y^2: erfc(y) = exp(-y^2) / y * (1/sqrt(pi) - z * P3(z) / Q3(z))
_P3: Final = (
    1.63153871373020978e-2,
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
)
_Q3: Final = (
    1.0,
    2.56852019228982242e00,
    1.87295284992346725e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)
_SMALL: Final = 0.46875
_MIDDLE: Final = 4.0
_GREEK_NAMES: Final = ("price", "delta", "gamma", "vega", "theta")


def _poly(coefficients: tuple[float, ...], z: FloatArray) -> FloatArray:
    """Horner evaluation; the Python loop runs over coefficients, never over elements."""
    result = np.multiply(z, coefficients[0])
    result += coefficients[1]
    for c in coefficients[2:]:
        result *= z
        result += c
    return result


def _exp_minus_square(y: FloatArray) -> FloatArray:
    """exp(-y^2) with Cody's split of y^2, which keeps the relative error near one ulp."""
    y_hi = np.trunc(y * 16.0) / 16.0
    rest = (y - y_hi) * (y + y_hi)
    result: FloatArray = np.exp(-y_hi * y_hi) * np.exp(-rest)
    return result


def _erfc_nonnegative(y: FloatArray) -> FloatArray:
    """erfc(y) for y >= 0 (1-d array).

    The middle formula is evaluated on every element and the small-argument one selected with
    ``np.where`` (both are harmless outside their ranges): on cache-sized blocks this beats
    gathering each region; only the rare tail beyond 4 is gathered.
    """
    y = np.minimum(y, _ERFC_ZERO_BEYOND)
    z = y * y
    e = _exp_minus_square(y)
    middle = e * _poly(_P2, y) / _poly(_Q2, y)
    out = np.where(y <= _SMALL, 1.0 - y * _poly(_P1, z) / _poly(_Q1, z), middle)
    large = y > _MIDDLE
    if large.any():
        yl = y[large]
        zl = 1.0 / (yl * yl)
        out[large] = e[large] / yl * (_INV_SQRT_PI - zl * _poly(_P3, zl) / _poly(_Q3, zl))
    return out


def _erfc_flat(x: FloatArray) -> FloatArray:
    y = np.abs(x)
    tail = _erfc_nonnegative(y)
    return np.where(x < 0.0, 2.0 - tail, tail)


def _as_output(values: FloatArray, shape: tuple[int, ...]) -> FloatOrArray:
    """Reshape a flat result; scalar inputs give a Python float."""
    if shape == ():
        return float(values[0])
    return values.reshape(shape)


def _flat(x: npt.ArrayLike) -> tuple[FloatArray, tuple[int, ...]]:
    arr = np.asarray(x, dtype=np.float64)
    return arr.reshape(-1), arr.shape


def erfc(x: npt.ArrayLike) -> FloatOrArray:
    """Complementary error function, relative error ~1e-16 over the whole double range."""
    flat, shape = _flat(x)
    return _as_output(_erfc_flat(flat), shape)


def erf(x: npt.ArrayLike) -> FloatOrArray:
    """Error function; the small-argument branch avoids the cancellation of ``1 - erfc``."""
    flat, shape = _flat(x)
    small = np.abs(flat) <= _SMALL
    out = 1.0 - _erfc_flat(flat)
    xs = flat[small]
    zs = xs * xs
    out[small] = xs * _poly(_P1, zs) / _poly(_Q1, zs)
    return _as_output(out, shape)


def _ndtr_flat(x: FloatArray) -> FloatArray:
    return 0.5 * _erfc_flat(-x / _SQRT2)


def ndtr(x: npt.ArrayLike) -> FloatOrArray:
    """Standard normal CDF N(x) = erfc(-x/sqrt 2)/2, relatively accurate in the lower tail."""
    flat, shape = _flat(x)
    return _as_output(_ndtr_flat(flat), shape)


def norm_pdf(x: npt.ArrayLike) -> FloatOrArray:
    """Standard normal density phi(x)."""
    flat, shape = _flat(x)
    with np.errstate(over="ignore", under="ignore"):
        return _as_output(np.exp(-0.5 * flat * flat) * _INV_SQRT_2PI, shape)


@dataclass(frozen=True)
class Greeks:
    """Price and sensitivities per one unit of underlying (Hull ch. 19).

    ``vega`` is per 1.00 of volatility (not per vol point); ``theta`` is dV/dt per year of calendar
    time (negative for a long option, as in Hull).
    """

    price: FloatOrArray
    delta: FloatOrArray
    gamma: FloatOrArray
    vega: FloatOrArray
    theta: FloatOrArray


@dataclass(frozen=True)
class GreekArrays:
    """Same as :class:`Greeks`, always flat float arrays (the vectorised callers' form)."""

    price: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray

    @classmethod
    def empty_like(cls, template: FloatArray) -> GreekArrays:
        return cls(*(np.empty_like(template, dtype=np.float64) for _ in _GREEK_NAMES))

    def put(self, where: slice | npt.NDArray[np.intp], part: GreekArrays) -> None:
        """Write ``part`` into these arrays at ``where``."""
        for name in _GREEK_NAMES:
            getattr(self, name)[where] = getattr(part, name)


def bs_greeks_flat(
    spot: FloatArray,
    strike: FloatArray,
    vol: FloatArray,
    rate: FloatArray,
    t_years: FloatArray,
    is_call: BoolArray,
) -> GreekArrays:
    """Black-Scholes-Merton greeks for equally long 1-d arrays (the vectorised kernel).

    With w = +1 for a call and -1 for a put, tau = max(t, 0), D = K e^{-r tau}, s = vol sqrt(tau),
    d1 = ln(S/D)/s + s/2 and d2 = d1 - s (Hull ch. 15, eq. 15.20-15.21; ch. 19):

    * price = w (S N(w d1) - D N(w d2))
    * delta = w N(w d1); gamma = phi(d1)/(S s); vega = S phi(d1) sqrt(tau)
    * theta = -S phi(d1) vol/(2 sqrt tau) - w r D N(w d2)

    When s < MIN_STDEV (at or after expiry, or zero volatility) or S, K <= 0 the option is
    deterministic: price = max(w (S - D), 0), call delta is the step 1/0.5/0 as S >, =, < D (put
    delta = call delta - 1), gamma = 0, theta = -r D delta before expiry and 0 at expiry; vega is
    its limit as vol -> 0+ (S sqrt(tau) phi(0) exactly at S = D, otherwise 0). Nothing is NaN or
    infinite for finite inputs.

    Long inputs are processed in blocks of :data:`BLOCK` elements (a Python loop over blocks,
    never over elements) so the temporaries stay in cache.
    """
    n = spot.shape[0]
    if n <= BLOCK:
        return _bs_block(spot, strike, vol, rate, t_years, is_call)
    out = GreekArrays.empty_like(spot)
    for start in range(0, n, BLOCK):
        part = slice(start, start + BLOCK)
        out.put(
            part,
            _bs_block(
                spot[part], strike[part], vol[part], rate[part], t_years[part], is_call[part]
            ),
        )
    return out


def _bs_block(
    spot: FloatArray,
    strike: FloatArray,
    vol: FloatArray,
    rate: FloatArray,
    t_years: FloatArray,
    is_call: BoolArray,
) -> GreekArrays:
    with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
        tau = np.maximum(t_years, 0.0)
        sqrt_tau = np.sqrt(tau)
        disc_strike = strike * np.exp(-rate * tau)
        vol_pos = np.maximum(vol, 0.0)
        stdev = vol_pos * sqrt_tau
        smooth = (stdev >= MIN_STDEV) & (spot > 0.0) & (strike > 0.0)
        w = np.where(is_call, 1.0, -1.0)
        if smooth.all():  # the common case: no gathering
            return _smooth_greeks(spot, disc_strike, stdev, sqrt_tau, vol_pos, rate, w)
        out = GreekArrays.empty_like(spot)
        for mask, greeks in (
            (smooth, _smooth_greeks),
            (~smooth, _deterministic_greeks),
        ):
            idx = np.flatnonzero(mask)
            out.put(
                idx,
                greeks(
                    spot[idx],
                    disc_strike[idx],
                    stdev[idx],
                    sqrt_tau[idx],
                    vol_pos[idx],
                    rate[idx],
                    w[idx],
                ),
            )
        return out


def _smooth_greeks(
    spot: FloatArray,
    disc_strike: FloatArray,
    stdev: FloatArray,
    sqrt_tau: FloatArray,
    vol: FloatArray,
    rate: FloatArray,
    w: FloatArray,
) -> GreekArrays:
    """The Black-Scholes-Merton formulas (Hull ch. 15, 19), for stdev > 0 and S, K > 0."""
    d1 = np.log(spot / disc_strike) / stdev + 0.5 * stdev
    d2 = d1 - stdev
    n1 = _ndtr_flat(w * d1)
    n2 = _ndtr_flat(w * d2)
    s_pdf = spot * np.exp(-0.5 * d1 * d1) * _INV_SQRT_2PI
    d_n2 = disc_strike * n2
    price = w * (spot * n1 - d_n2)
    # rounding can not push the price below its no-arbitrage floor max(w (S - D), 0)
    price = np.maximum(price, np.maximum(w * (spot - disc_strike), 0.0))
    return GreekArrays(
        price=price,
        delta=w * n1,
        gamma=s_pdf / (spot * spot * stdev),
        vega=s_pdf * sqrt_tau,
        theta=-0.5 * s_pdf * vol / sqrt_tau - w * rate * d_n2,
    )


def _deterministic_greeks(
    spot: FloatArray,
    disc_strike: FloatArray,
    stdev: FloatArray,
    sqrt_tau: FloatArray,
    vol: FloatArray,
    rate: FloatArray,
    w: FloatArray,
) -> GreekArrays:
    """No randomness left (at expiry, zero vol) or S, K <= 0: the discounted forward payoff."""
    live = sqrt_tau > 0.0
    call_step = np.where(spot > disc_strike, 1.0, np.where(spot < disc_strike, 0.0, 0.5))
    delta = np.where(w > 0.0, call_step, call_step - 1.0)
    at_forward = live & (spot == disc_strike) & (spot > 0.0)
    return GreekArrays(
        price=np.maximum(w * (spot - disc_strike), 0.0),
        delta=delta,
        gamma=np.zeros_like(spot),
        vega=np.where(at_forward, spot * sqrt_tau * _INV_SQRT_2PI, 0.0),
        theta=np.where(live, -rate * disc_strike * delta, 0.0),
    )


def bs_greeks(
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    vol: npt.ArrayLike,
    rate: npt.ArrayLike,
    t_years: npt.ArrayLike,
    is_call: npt.ArrayLike,
) -> Greeks:
    """Black-Scholes-Merton price and greeks of a European option, per unit of underlying.

    Arguments broadcast together (numpy rules); the fields have the broadcast shape, or are
    floats when every argument is a scalar. See :func:`bs_greeks_flat` for the formulas (Hull,
    *Options, Futures, and Other Derivatives*, ch. 15 and 19) and the degenerate cases.
    """
    arrays = np.broadcast_arrays(
        np.asarray(spot, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(vol, dtype=np.float64),
        np.asarray(rate, dtype=np.float64),
        np.asarray(t_years, dtype=np.float64),
        np.asarray(is_call, dtype=np.bool_),
    )
    shape = arrays[0].shape
    s, k, v, r, t, c = (a.reshape(-1) for a in arrays)
    g = bs_greeks_flat(s, k, v, r, t, c.astype(np.bool_))
    return Greeks(
        price=_as_output(g.price, shape),
        delta=_as_output(g.delta, shape),
        gamma=_as_output(g.gamma, shape),
        vega=_as_output(g.vega, shape),
        theta=_as_output(g.theta, shape),
    )


def bs_price(
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    vol: npt.ArrayLike,
    rate: npt.ArrayLike,
    t_years: npt.ArrayLike,
    is_call: npt.ArrayLike,
) -> FloatOrArray:
    """Black-Scholes-Merton price only (Hull ch. 15); same conventions as :func:`bs_greeks`."""
    return bs_greeks(spot, strike, vol, rate, t_years, is_call).price


def ewma_variance(
    variance: npt.ArrayLike,
    log_return: npt.ArrayLike,
    dt_seconds: npt.ArrayLike,
    half_life_seconds: float,
) -> FloatArray:
    """One update of an annualised EWMA variance by a log return over ``dt_seconds``.

    RiskMetrics-style exponential weighting (J.P. Morgan/Reuters, *RiskMetrics Technical
    Document*, 1996, sect. 5.2.1) in calendar time, so irregular oracle rounds weigh by how long
    they cover: ``w = 1 - 2^(-dt / half_life)``, ``var' = (1 - w) var + w r^2 / dt`` (``r^2 / dt``
    is the return's variance rate, annualised). ``dt <= 0`` leaves ``var`` unchanged.
    """
    var, ret, dt = (np.asarray(x, dtype=np.float64) for x in (variance, log_return, dt_seconds))
    positive = dt > 0.0
    safe = np.where(positive, dt, 1.0)
    weight = np.where(positive, 1.0 - np.exp2(-safe / half_life_seconds), 0.0)
    rate = ret * ret / (safe / SECONDS_PER_YEAR)
    updated: FloatArray = (1.0 - weight) * var + weight * np.where(positive, rate, 0.0)
    return updated


def ewma_variance_one(
    variance: float, log_return: float, dt_seconds: float, half_life_seconds: float
) -> float:
    """:func:`ewma_variance` for one vault's floats (no array round trip: it runs for every
    vault at every oracle round)."""
    if dt_seconds <= 0.0:
        return variance
    weight = 1.0 - math.exp2(-dt_seconds / half_life_seconds)
    rate = log_return * log_return / (dt_seconds / SECONDS_PER_YEAR)
    return (1.0 - weight) * variance + weight * rate


def ewma_vol_path(
    spot: FloatArray, step_seconds: float, half_life_seconds: float, start_vol: float
) -> FloatArray:
    """Realised vol at every row of a time-major price array (row ``i`` uses the returns up to
    row ``i``), from :func:`ewma_variance` started at ``start_vol``; shape of ``spot``."""
    out = np.empty_like(spot, dtype=np.float64)
    var = np.full(spot.shape[1:], start_vol * start_vol)
    out[0] = start_vol
    log_spot = np.log(spot)
    for i in range(1, spot.shape[0]):
        var = ewma_variance(var, log_spot[i] - log_spot[i - 1], step_seconds, half_life_seconds)
        out[i] = np.sqrt(var)
    return out
