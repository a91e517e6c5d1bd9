"""When to rebalance: no-trade bands around the target delta, and the costs that size them.

Three policies answer the same question through the same interface (:class:`BandPolicy`), so
the keeper and the backtester can compare them on identical inputs:

* :class:`GasAdjustedBand`: the cost-optimal band (H, h) of a mean-variance hedger with a fixed,
  a proportional and a quadratic (price impact) cost per trade (derivation below and in
  ``docs/hedging.md``);
* :class:`FixedThreshold`: a constant band, trading back to target;
* :class:`TimeBased`: rebalance on a clock, back to target.

All share two rules: the hard limit caps the band (``urgent`` = ``|deviation| > hard_limit``
always acts, whatever the cost), and a trade leaves the deviation at ``trade_to`` =
``sign(deviation) * inner`` (``inner`` = h for the band, 0 for the others).

Gas-adjusted band (v2: inner target)
------------------------------------
Impulse control of a diffusing deviation with a fixed cost (Constantinides 1986; Davis, Panas &
Zariphopoulou 1993; Korn 1998, "Portfolio optimisation with strictly positive transaction costs
and impulse control", Finance Stoch. 2): the optimal policy is a band ``[-H, H]`` and a trade at
the edge goes to an INNER point ``+-h``, ``0 <= h < H``; ``h = 0`` with a fixed cost only,
``h -> H`` (Whalley & Wilmott 1997 / Leland 1985: trading to the edge) with a proportional cost
only.

* Between trades ``x`` diffuses with variance rate ``v = Gamma^2 sigma^2 S^2``. Started at ``h``
  it leaves ``(-H, H)`` after ``(H^2 - h^2) / v`` on average, and each trade moves ``H - h``, so
  costs accrue at ``v (K + b (H - h) + c (H - h)^2) / (H^2 - h^2)`` per unit time, with
  ``K`` gas, ``b = lambda S`` (fee) and ``c = kappa S`` (linear impact ``kappa |q|`` of the value).
* The renewal process' stationary density is the Green's function of ``(-H, H)`` averaged over
  the restart points ``+-h``, whence ``E[x^2] = (H^2 + h^2) / 6``; the hedger pays
  ``r sigma^2 S^2 E[x^2]`` with ``r = gamma_ra / 2`` (the vault's risk aversion ``gamma_ra``
  charges ``(gamma_ra / 2) Var``).
* Dividing by ``sigma^2 S^2`` (sigma cancels): minimise over ``H > h >= 0``
  ``Gamma^2 (K + b (H - h) + c (H - h)^2) / (H^2 - h^2) + r (H^2 + h^2) / 6``.
  With ``L = (Gamma^2 K / r)^(1/4)``, ``H = L u``, ``h = L w`` it becomes
  ``r L^2 f(u, w)``, ``f = (1 + beta (u - w) + chi (u - w)^2) / (u^2 - w^2) + (u^2 + w^2) / 6``,
  ``beta = Gamma^2 b / (r L^3)``, ``chi = Gamma^2 c / (r L^2)``: the optimum (u*, w*) depends on
  two numbers only and is precomputed on a log grid (:func:`band_table`), looked up bilinearly.
* Limits: ``beta = chi = 0`` gives ``u* = 6^(1/4)``, ``w* = 0`` (``H = (12 K Gamma^2 /
  gamma_ra)^(1/4)``, trading to the centre); ``K -> 0`` gives ``h -> H = (3 b Gamma^2 /
  (4 r))^(1/3)``, Whalley-Wilmott's ``(3/2 lambda S Gamma^2 / gamma_ra)^(1/3)``.

Last trade near expiry: a trade that removes ``x^2 - h^2`` of variance rate is worth at most
``r sigma^2 S^2 (x^2 - h^2) tau`` over the time ``tau`` left; outside the band the keeper trades
only if that exceeds the trade's cost ``K + b (|x| - h) + c (|x| - h)^2`` (urgent trades always go).

Gas timing (opt-in, :func:`gas_wait`): given the usual gas cost and the base fee's half-life,
a trade at a gas spike waits while one half-life of risk costs less than the gas it saves.

Edge cases: ``Gamma = 0``: the deviation does not drift, so the band is 0 and the floor decides.
Zero risk aversion: an infinite band, only the hard limit acts. ``K = 0``: ``L = 0``; the lookup
then uses the smallest fixed cost that keeps beta and chi on the table (its effect on (H, h) is
below the table's resolution). Cost inputs: ``K`` from :func:`gas_cost_quote`, ``lambda``
from :func:`proportional_cost` (the fee), ``kappa`` = impact per unit traded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Final, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from keeper.core.greeks import BoolArray, FloatArray, FloatOrArray
from keeper.core.types import WAD, PolicyKind, VaultParams
from keeper.errors import ConfigError

DUST_UNITS: Final = 1e-9
"""Smallest deviation (underlying units) worth a trade when a time-based clock fires."""

_BPS: Final = 1e-4
_T = TypeVar("_T", bound=np.generic)


def _f(x: npt.ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def _scalar_or_array(x: FloatArray) -> FloatOrArray:
    return float(x) if x.ndim == 0 else x


@dataclass(frozen=True)
class BandInputs:
    """What every policy sees about one vault, or many (each field a float or a broadcastable
    array)."""

    deviation: npt.ArrayLike  # net delta - target, underlying units
    gamma: npt.ArrayLike  # portfolio gamma, d(delta)/d(spot)
    spot: npt.ArrayLike  # quote per underlying
    vol: npt.ArrayLike  # annualised
    t_years: npt.ArrayLike  # size-weighted time to expiry, years
    risk_aversion: npt.ArrayLike  # per quote unit
    fixed_cost: npt.ArrayLike  # K: quote cost of one rebalance regardless of size (gas)
    proportional_cost: npt.ArrayLike  # lambda: fraction of traded value (the DEX fee)
    seconds_since_rebalance: npt.ArrayLike
    impact_per_unit: npt.ArrayLike = 0.0  # kappa: fraction of traded value per unit traded
    # gas timing (off unless both are given): K at the usual base fee, and the base fee's
    # half-life (years) back to it after a spike
    reference_fixed_cost: npt.ArrayLike = np.nan
    gas_half_life_years: npt.ArrayLike = np.nan


@dataclass(frozen=True)
class BandResult:
    """A policy's verdict; arrays have the broadcast shape of the inputs (0-d for scalars)."""

    half_width: FloatArray  # underlying units; act needs |deviation| > half_width (or urgent)
    act: BoolArray  # rebalance now (the band also asks the last-trade and gas-timing tests)
    urgent: BoolArray  # |deviation| > hard_limit: act whatever the cost
    spot_move: FloatArray  # half_width / |gamma|: spot move from a fresh hedge to the band edge
    inner: FloatArray  # h >= 0: a trade leaves |deviation| = inner (0: back to target)
    trade_to: FloatArray  # sign(deviation) * min(inner, |deviation|): what a trade leaves


class BandPolicy(Protocol):
    """Anything that turns :class:`BandInputs` into a :class:`BandResult`, with a cheap lower
    bound of its half-width (a deviation within it, and within the hard limit, never acts)."""

    @property
    def hard_limit(self) -> npt.ArrayLike: ...

    def evaluate(self, inputs: BandInputs) -> BandResult: ...

    def lower_bound(self, inputs: BandInputs) -> FloatArray: ...


def trigger_move(half_width: BandResult | npt.ArrayLike, gamma: npt.ArrayLike) -> FloatArray:
    """Spot move (quote per underlying) that takes a freshly hedged book to the band edge.

    ``H / |Gamma|`` for a half-width or a :class:`BandResult`; infinite where Gamma = 0 (no spot
    move changes the delta), never NaN. First order in the spot move (Gamma held fixed).
    """
    h = _f(half_width.half_width if isinstance(half_width, BandResult) else half_width)
    g = np.abs(_f(gamma))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(g > 0.0, h / np.where(g > 0.0, g, 1.0), np.inf)


def _result(
    inputs: BandInputs,
    half_width: FloatArray,
    hard_limit: npt.ArrayLike,
    inner: npt.ArrayLike = 0.0,
    worth: npt.ArrayLike = True,
) -> BandResult:
    """Cap the band (and the inner target) by the hard limit and decide: act outside the band
    where the trade is ``worth`` it, and always past the hard limit; every array gets the shape
    of all inputs."""
    dev, hard, gam = _f(inputs.deviation), _f(hard_limit), _f(inputs.gamma)
    shape = np.broadcast_shapes(
        half_width.shape,
        hard.shape,
        np.shape(inner),
        np.shape(worth),
        *(np.shape(getattr(inputs, f.name)) for f in fields(inputs)),
    )
    abs_dev = np.abs(dev)
    half = _full(np.minimum(half_width, hard), shape)
    urgent = abs_dev > hard
    target = np.minimum(_f(inner), half)
    return BandResult(
        half_width=half,
        act=_full(((abs_dev > half) & np.asarray(worth, dtype=np.bool_)) | urgent, shape),
        urgent=_full(urgent, shape),
        spot_move=_full(trigger_move(half, gam), shape),
        inner=_full(target, shape),
        trade_to=_full(np.sign(dev) * np.minimum(target, abs_dev), shape),
    )


def last_trade_worth(inputs: BandInputs, inner: npt.ArrayLike) -> BoolArray:
    """The last-trade test: ``(gamma_ra / 2) sigma^2 S^2 (x^2 - h^2) tau > K + b (|x| - h) +
    c (|x| - h)^2`` (module docstring); the variance a trade removes over the time left must
    be worth its cost."""
    x, h = np.abs(_f(inputs.deviation)), np.minimum(_f(inner), np.abs(_f(inputs.deviation)))
    spot = np.abs(_f(inputs.spot))
    q = x - h
    with np.errstate(invalid="ignore", over="ignore"):
        risk = (
            np.maximum(_f(inputs.risk_aversion), 0.0)
            / 2.0
            * np.square(_f(inputs.vol) * spot)
            * (x * x - h * h)
            * np.maximum(_f(inputs.t_years), 0.0)
        )
        cost = (
            np.maximum(_f(inputs.fixed_cost), 0.0)
            + np.maximum(_f(inputs.proportional_cost), 0.0) * spot * q
            + np.maximum(_f(inputs.impact_per_unit), 0.0) * spot * q * q
        )
    worth: BoolArray = np.asarray(risk > cost, dtype=np.bool_)
    return worth


def _full(x: npt.NDArray[_T], shape: tuple[int, ...]) -> npt.NDArray[_T]:
    """``x`` with ``shape``, as a writeable ndarray (0-d for scalars, never a broadcast view)."""
    arr = np.asarray(x)
    return arr if arr.shape == shape else np.broadcast_to(arr, shape).copy()


_TABLE_LOG10_MIN: Final = -4.0
_TABLE_LOG10_MAX: Final = 6.0
_TABLE_NODES: Final = 81
_GOLDEN_STEPS: Final = 90
_LOG_D_RANGE: Final = (-10.0, 4.0)


def scaled_band_cost(
    u: npt.ArrayLike, w: npt.ArrayLike, beta: npt.ArrayLike, chi: npt.ArrayLike
) -> FloatArray:
    """``f(u, w) = (1 + beta (u - w) + chi (u - w)^2) / (u^2 - w^2) + (u^2 + w^2) / 6``, the band's
    cost rate in units of ``r L^2`` (module docstring); ``inf`` unless ``u > w >= 0``."""
    u_, w_ = _f(u), _f(w)
    d = u_ - w_
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = (1.0 + _f(beta) * d + _f(chi) * d * d) / (d * (u_ + w_)) + (u_ * u_ + w_ * w_) / 6
    return np.where((d > 0.0) & (w_ >= 0.0), cost, np.inf)


def _best_sum(d: FloatArray, beta: FloatArray, chi: FloatArray) -> FloatArray:
    """For a fixed ``d = u - w``, the ``s = u + w >= d`` minimising ``f``:
    ``s^3 = 6 (1 + beta d + chi d^2) / d`` (from ``df/ds = 0``), or ``d`` (then ``w = 0``)."""
    s: FloatArray = np.maximum(np.cbrt(6.0 * (1.0 + beta * d + chi * d * d) / d), d)
    return s


def _profile(log_d: FloatArray, beta: FloatArray, chi: FloatArray) -> FloatArray:
    d = np.exp(log_d)
    s = _best_sum(d, beta, chi)
    return scaled_band_cost((s + d) / 2, (s - d) / 2, beta, chi)


def minimise_scaled_band(beta: npt.ArrayLike, chi: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(u*, w*) minimising ``f`` for each (beta, chi) (vectorised): the inner minimum over
    ``s = u + w`` is closed-form (:func:`_best_sum`), the outer over ``ln d`` a golden-section
    search (the profile is unimodal in ``ln d``: one stationary point on every grid we tested)."""
    b_, c_ = np.broadcast_arrays(_f(beta), _f(chi))
    lo = np.full(b_.shape, _LOG_D_RANGE[0])
    hi = np.full(b_.shape, _LOG_D_RANGE[1])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    for _ in range(_GOLDEN_STEPS):
        x1 = hi - ratio * (hi - lo)
        x2 = lo + ratio * (hi - lo)
        left = _profile(x1, b_, c_) < _profile(x2, b_, c_)
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
    d = np.exp((lo + hi) / 2)
    s = _best_sum(d, b_, c_)
    return (s + d) / 2, (s - d) / 2


@functools.cache
def band_table() -> tuple[FloatArray, FloatArray, FloatArray]:
    """The precomputed table: (log10 grid, u*[beta, chi], w*[beta, chi]) on
    ``log10 beta, log10 chi`` in ``[-4, 6]`` (81 x 81 nodes, built once, ~10 ms)."""
    grid = np.linspace(_TABLE_LOG10_MIN, _TABLE_LOG10_MAX, _TABLE_NODES)
    beta, chi = np.meshgrid(10.0**grid, 10.0**grid, indexing="ij")
    u, w = minimise_scaled_band(beta, chi)
    return grid, u, w


def lookup_band(beta: npt.ArrayLike, chi: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(u*, w*) by bilinear interpolation of :func:`band_table` in (log10 beta, log10 chi);
    arguments outside the table are clamped to it (below it their cost terms are negligible)."""
    with np.errstate(divide="ignore"):
        return _lookup_log10(
            np.log10(np.maximum(_f(beta), 0.0)), np.log10(np.maximum(_f(chi), 0.0))
        )


def _lookup_log10(log_beta: FloatArray, log_chi: FloatArray) -> tuple[FloatArray, FloatArray]:
    grid, u_flat, w_flat = _flat_table()
    n = grid.size
    scale = (n - 1.0) / (grid[-1] - grid[0])
    pi = np.clip((log_beta - grid[0]) * scale, 0.0, n - 1.0)
    pj = np.clip((log_chi - grid[0]) * scale, 0.0, n - 1.0)
    i = np.minimum(pi.astype(np.intp), n - 2)
    j = np.minimum(pj.astype(np.intp), n - 2)
    fi, fj = pi - i, pj - j
    corner = i * n + j  # flat index: np.take on 1-d tables is far faster than 2-d fancy indexing

    def interp(flat: FloatArray) -> FloatArray:
        top = np.take(flat, corner) * (1 - fj) + np.take(flat, corner + 1) * fj
        bottom = np.take(flat, corner + n) * (1 - fj) + np.take(flat, corner + n + 1) * fj
        result: FloatArray = top * (1 - fi) + bottom * fi
        return result

    return interp(u_flat), interp(w_flat)


@functools.cache
def _flat_table() -> tuple[FloatArray, FloatArray, FloatArray]:
    grid, u_tab, w_tab = band_table()
    return grid, np.ascontiguousarray(u_tab).ravel(), np.ascontiguousarray(w_tab).ravel()


def optimal_band(
    gamma: npt.ArrayLike,
    risk_aversion: npt.ArrayLike,
    fixed_cost: npt.ArrayLike,
    fee_per_unit: npt.ArrayLike,
    impact_per_unit2: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """Unconstrained optimum (H, h), underlying units, of the cost rate in the module docstring:
    ``K`` = ``fixed_cost``, ``b`` = ``fee_per_unit`` (quote per unit traded, ``lambda S``),
    ``c`` = ``impact_per_unit2`` (quote per unit squared, ``kappa S``); ``risk_aversion`` is the
    vault's ``gamma_ra`` (``r = gamma_ra / 2``).

    In logs: ``log L = (log Gamma^2 + log K - log r) / 4``, ``log beta = log(Gamma^2 b / r) -
    3 log L``, ``log chi = log(Gamma^2 c / r) - 2 log L``. When ``K`` is too small for the table
    (beta or chi above its top, e.g. ``K = 0``) the smallest ``K`` that keeps both on it is used.
    (0, 0) when Gamma = 0 or every cost is 0; (inf, inf) when the risk aversion is 0.
    """
    gam, ra = _f(gamma), _f(risk_aversion)
    top = _TABLE_LOG10_MAX
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        lg = 2.0 * np.log10(np.abs(gam))
        lr = np.log10(ra / 2.0)
        lk, lb, lc = (np.log10(_f(x)) for x in (fixed_cost, fee_per_unit, impact_per_unit2))
        free = (lk == -np.inf) & (lb == -np.inf) & (lc == -np.inf)  # no cost at all
        gb, gc = lg + lb - lr, lg + lc - lr  # log(Gamma^2 b / r), log(Gamma^2 c / r)
        # beta <= top  <=>  log K >= 4/3 (gb - top) - lg + lr; chi <= top  <=>  2 (gc - top) ...
        lk = np.fmax(lk, np.fmax((gb - top) * (4.0 / 3.0), 2.0 * (gc - top)) - lg + lr)
        log_length = (lg + lk - lr) * 0.25
        # fmax/fmin drop NaN (from Gamma^2 = inf or no cost): cheap ufuncs, not nan_to_num
        u, w = _lookup_log10(
            np.fmax(gb - 3.0 * log_length, -np.inf), np.fmax(gc - 2.0 * log_length, -np.inf)
        )
        length = 10.0**log_length
        outer, inner = length * u, length * w
    none = (lg == -np.inf) | free
    outer = np.where(ra > 0.0, np.where(none, 0.0, np.fmin(outer, np.inf)), np.inf)
    inner = np.where(ra > 0.0, np.where(none, 0.0, np.fmin(inner, np.inf)), np.inf)
    return outer, inner


def expected_wait_years(
    half_width: npt.ArrayLike, gamma: npt.ArrayLike, spot: npt.ArrayLike, vol: npt.ArrayLike
) -> FloatArray:
    """Expected time (years) for the deviation to travel from 0 to +-H: ``H^2 / (Gamma sigma S)^2``.

    Compare with the time to expiry for the horizon effect (module docstring); ``inf`` when the
    deviation does not diffuse (Gamma, vol or spot 0).
    """
    rate = np.square(_f(gamma) * _f(vol) * _f(spot))
    h2 = np.square(_f(half_width))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(rate > 0.0, h2 / np.where(rate > 0.0, rate, 1.0), np.inf)


def gas_wait(inputs: BandInputs, inner: npt.ArrayLike) -> BoolArray:
    """The gas-timing rule: wait out a gas spike when one half-life of waiting costs less risk
    than it saves in gas.

    A one-step look-ahead stopping rule (Chow, Robbins & Siegmund, *Great Expectations: The
    Theory of Optimal Stopping*, 1971, ch. 3): the base fee's log excess over its usual level
    halves in one half-life ``t_half``, so the gas of a trade then is ``sqrt(K K_ref)``; waiting
    costs the risk of the deviation over ``t_half``. Wait iff
    ``(gamma_ra / 2) sigma^2 S^2 (x^2 - h^2) t_half < K - sqrt(K K_ref)`` (never when gas is at
    or below its usual level; off when ``K_ref`` or ``t_half`` is not given).
    """
    k, k_ref = _f(inputs.fixed_cost), _f(inputs.reference_fixed_cost)
    t_half = _f(inputs.gas_half_life_years)
    x = np.abs(_f(inputs.deviation))
    h = np.minimum(_f(inner), x)
    with np.errstate(invalid="ignore", over="ignore"):
        saving = k - np.sqrt(np.maximum(k * k_ref, 0.0))
        risk = (
            np.maximum(_f(inputs.risk_aversion), 0.0)
            / 2.0
            * np.square(_f(inputs.vol) * _f(inputs.spot))
            * (x * x - h * h)
            * t_half
        )
        wait: BoolArray = np.asarray((k > k_ref) & (risk < saving), dtype=np.bool_)
    return wait


@dataclass(frozen=True)
class GasAdjustedBand:
    """Cost-optimal band ``clip(H, floor, hard_limit)`` and inner target ``min(h, band)`` from
    :func:`optimal_band`, acting outside the band only when :func:`last_trade_worth` agrees
    (and always past the hard limit)."""

    floor: npt.ArrayLike  # governance minimum half-width, underlying units
    hard_limit: npt.ArrayLike  # underlying units

    def lower_bound(self, inputs: BandInputs) -> FloatArray:
        """A cheap lower bound of the half-width :meth:`evaluate` returns (before the hard
        limit): ``max(floor, L min u*)`` with ``L = (Gamma^2 K / r)^(1/4)``, since the looked-up
        ``u*`` is a convex combination of table entries and the lookup's K is at least K. A
        caller with many deviations may evaluate only those beyond it (the backtester does)."""
        _, u_tab, _ = band_table()
        g2 = np.square(_f(inputs.gamma))
        r = np.maximum(_f(inputs.risk_aversion), 0.0) / 2.0
        k = np.maximum(_f(inputs.fixed_cost), 0.0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            length = np.sqrt(np.sqrt(g2 * k / r))
        bound: FloatArray = np.fmax(length * u_tab.min(), _f(self.floor))  # fmax drops NaN
        return bound

    def evaluate(self, inputs: BandInputs) -> BandResult:
        spot = np.abs(_f(inputs.spot))
        outer, inner = optimal_band(
            inputs.gamma,
            inputs.risk_aversion,
            inputs.fixed_cost,
            _f(inputs.proportional_cost) * spot,
            _f(inputs.impact_per_unit) * spot,
        )
        half = np.maximum(outer, _f(self.floor))
        inner = np.minimum(inner, half)
        worth = last_trade_worth(inputs, inner) & ~gas_wait(inputs, inner)
        return _result(inputs, half, self.hard_limit, inner, worth)


@dataclass(frozen=True)
class FixedThreshold:
    """Act when ``|deviation| > threshold`` (capped by the hard limit)."""

    threshold: npt.ArrayLike  # underlying units
    hard_limit: npt.ArrayLike

    def evaluate(self, inputs: BandInputs) -> BandResult:
        return _result(inputs, _f(self.threshold), self.hard_limit)

    def lower_bound(self, inputs: BandInputs) -> FloatArray:
        """The threshold itself."""
        return _f(self.threshold)


@dataclass(frozen=True)
class TimeBased:
    """Act when ``interval_seconds`` have passed since the last rebalance and ``|deviation| >
    dust``, or at once past the hard limit; the reported half-width is ``dust`` once the clock
    has fired and the hard limit before."""

    interval_seconds: npt.ArrayLike
    hard_limit: npt.ArrayLike
    dust: npt.ArrayLike = DUST_UNITS

    def evaluate(self, inputs: BandInputs) -> BandResult:
        return _result(inputs, self._half_width(inputs), self.hard_limit)

    def lower_bound(self, inputs: BandInputs) -> FloatArray:
        """The half-width itself."""
        return self._half_width(inputs)

    def _half_width(self, inputs: BandInputs) -> FloatArray:
        """``dust`` once the clock fired, the hard limit before."""
        fired = _f(inputs.seconds_since_rebalance) >= _f(self.interval_seconds)
        half: FloatArray = np.where(fired, _f(self.dust), _f(self.hard_limit))
        return half


def subset_inputs(inputs: BandInputs, idx: npt.NDArray[np.intp]) -> BandInputs:
    """The inputs of the entries ``idx`` (1-d arrays are indexed, scalars kept)."""

    def pick(x: object) -> object:
        arr = np.asarray(x)
        return arr[idx] if arr.ndim else arr

    return BandInputs(**{k: pick(v) for k, v in vars(inputs).items()})  # type: ignore[arg-type]


def policy_for(
    kind: PolicyKind, param: npt.ArrayLike, floor: npt.ArrayLike, hard_limit: npt.ArrayLike
) -> BandPolicy:
    """Build a vault's policy. ``param``: threshold in underlying units (FIXED_THRESHOLD), interval
    in seconds (TIME_BASED), unused (GAS_ADJUSTED_BAND). ``param``, ``floor`` and ``hard_limit``
    may be arrays (one entry per vault of a group sharing the kind).

    The governance floor is a floor of the half-width under every policy: the fixed threshold is
    ``max(param, floor)`` and the time-based dust is ``max(floor, DUST_UNITS)``.
    """
    if kind == PolicyKind.GAS_ADJUSTED_BAND:
        return GasAdjustedBand(floor=floor, hard_limit=hard_limit)
    if kind == PolicyKind.FIXED_THRESHOLD:
        return FixedThreshold(threshold=np.maximum(_f(param), _f(floor)), hard_limit=hard_limit)
    if kind == PolicyKind.TIME_BASED:
        return TimeBased(_f(param), hard_limit, dust=np.maximum(_f(floor), DUST_UNITS))
    raise ConfigError(f"unknown rebalance policy kind {kind!r}")


def policy_for_params(params: VaultParams) -> BandPolicy:
    """:func:`policy_for` from on-chain ``VaultParams`` (wads -> underlying units; the time-based
    ``policy_param`` is plain seconds)."""
    kind = params.policy
    param = params.policy_param if kind == PolicyKind.TIME_BASED else params.policy_param / WAD
    return policy_for(kind, float(param), params.band_floor_wad / WAD, params.hard_limit_wad / WAD)


def gas_cost_quote(
    gas_units: npt.ArrayLike,
    base_fee_wei: npt.ArrayLike,
    priority_fee_wei: npt.ArrayLike,
    eth_price: npt.ArrayLike,
) -> FloatOrArray:
    """K, the quote cost of one transaction: ``gas x (base fee + tip) x 1e-18 x ETH price``."""
    fee_eth = _f(gas_units) * (_f(base_fee_wei) + _f(priority_fee_wei)) * 1e-18
    return _scalar_or_array(fee_eth * _f(eth_price))


def proportional_cost(
    dex_fee_bps: npt.ArrayLike, slippage_bps_per_unit: npt.ArrayLike, trade_size: npt.ArrayLike
) -> FloatOrArray:
    """lambda, the fraction of traded value lost on a trade of ``trade_size`` underlying units,
    linear price impact model: ``(fee_bps + impact_bps_per_unit x |size|) x 1e-4``."""
    bps = _f(dex_fee_bps) + _f(slippage_bps_per_unit) * np.abs(_f(trade_size))
    return _scalar_or_array(bps * _BPS)
