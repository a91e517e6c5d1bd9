"""When to rebalance: no-trade bands around the target delta, and the costs that size them.

Three policies answer the same question through the same interface (:class:`BandPolicy`), so
the keeper and the backtester can compare them on identical inputs:

* :class:`GasAdjustedBand`: the cost-optimal band of a mean-variance hedger (derivation below);
* :class:`FixedThreshold`: a constant band;
* :class:`TimeBased`: rebalance on a clock.

All three share two rules: the hard limit caps the band (``urgent`` = ``|deviation| >
hard_limit`` always acts, whatever the cost), and ``act == |deviation| > half_width`` exactly.

Gas-adjusted band
-----------------
In the spirit of Whalley & Wilmott (1997, "An asymptotic analysis of an optimal hedging model for
option pricing with transaction costs", Math. Finance 7(3)), with a fixed cost per trade for gas
(fixed-cost asymptotics: Korn 1998; Altarovici, Muhle-Karbe & Soner 2015). Our keeper trades
BACK TO TARGET whenever the deviation ``x`` reaches ``+-H``.

* Between trades ``dx = Gamma dS`` with ``dS = sigma S dW``, so ``x`` diffuses with variance rate
  ``v = Gamma^2 sigma^2 S^2``. Started at 0, it leaves ``[-H, H]`` after ``H^2 / v`` on average,
  so trades cost ``(K + lambda S H) v / H^2`` per unit time (each trade moves ``H`` underlying).
* Unhedged delta ``x`` adds ``x^2 sigma^2 S^2`` of P&L variance per unit time; a mean-variance
  hedger with risk aversion ``gamma_ra`` charges ``(gamma_ra / 2) sigma^2 S^2 E[x^2]``, and over an
  excursion from 0 to +-H the occupation density is proportional to ``H - |x|``, so
  ``E[x^2] = H^2 / 6``.
* Setting the derivative of the total cost rate
  ``C(H) = K v / H^2 + lambda S v / H + gamma_ra sigma^2 S^2 H^2 / 12`` to zero and dividing by
  ``sigma^2 S^2`` gives the quartic ``(gamma_ra / 6) H^4 - lambda S Gamma^2 H - 2 K Gamma^2 = 0``,
  whose left side is convex in ``H > 0`` and negative at 0: one positive root, found by Newton
  from an upper bound (monotone convergence).
* Limits: ``lambda = 0`` gives ``H = (12 K Gamma^2 / gamma_ra)^(1/4)``; ``K = 0`` gives
  ``H = (6 lambda S Gamma^2 / gamma_ra)^(1/3)``. Whalley-Wilmott's band is
  ``(3/2 lambda S Gamma^2 / gamma_ra)^(1/3)``, smaller by ``4^(1/3)``: they trade only back to
  the band edge (infinitesimal trades, cost paid on local time), we trade to the centre.

Volatility and time to expiry enter only through Gamma (``Gamma = phi(d1) / (S sigma sqrt(tau))``
per unit, Hull ch. 19). In DELTA units the band WIDENS with gamma (``H ~ Gamma^(1/2)`` when gas
dominates, ``Gamma^(2/3)`` when fees dominate); what NARROWS as gamma grows is the spot move that
reaches the band edge from a fresh hedge, ``H / Gamma ~ Gamma^(-1/2 .. -1/3)``
(:attr:`BandResult.spot_move`).

Edge cases: ``Gamma = 0`` means the deviation does not drift, while any deviation costs risk
forever, so the optimal band is 0 and the floor decides (act iff ``|x| > floor``). Zero risk
aversion means an infinite band: only the hard limit acts. Zero volatility makes Gamma 0 (see
:mod:`keeper.core.greeks`). The discount factor over one inter-trade interval is ignored.

Horizon effect: the analysis is asymptotic (many trades before expiry). When the expected wait
to the first trade, ``H^2 / v`` (:func:`expected_wait_years`), exceeds the time left to expiry the
band brings no benefit over not trading; we do NOT special-case it (near expiry at the money Gamma
explodes, the band widens in delta but the trigger move shrinks, which is the right direction), and
expose the wait so the backtester can measure how often the asymptotic regime is left.

Cost inputs: ``K`` is the quote cost of one rebalance whatever its size (gas,
:func:`gas_cost_quote`); ``lambda`` the fraction of traded value lost (fee + slippage,
:func:`proportional_cost`). Note that under trade-to-centre a LINEAR price impact ``kappa * size``
adds ``kappa S H^2`` per trade, i.e. the H-independent ``kappa S v`` per unit time: it does not
move the optimal band, only the fee and size-independent slippage do. Callers that still fold
impact into lambda (evaluated at the expected trade size) get a conservative, wider band.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from keeper.core.greeks import BoolArray, FloatArray, FloatOrArray
from keeper.core.types import WAD, PolicyKind, VaultParams
from keeper.errors import ConfigError

DUST_UNITS: Final = 1e-9
"""Smallest deviation (underlying units) worth a trade when a time-based clock fires."""

_NEWTON_MAX_STEPS: Final = 60
_NEWTON_TOLERANCE: Final = 4e-16
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
    proportional_cost: npt.ArrayLike  # lambda: fraction of traded value (fee + slippage)
    seconds_since_rebalance: npt.ArrayLike


@dataclass(frozen=True)
class BandResult:
    """A policy's verdict; arrays have the broadcast shape of the inputs (0-d for scalars)."""

    half_width: FloatArray  # underlying units; act == |deviation| > half_width
    act: BoolArray  # rebalance now
    urgent: BoolArray  # |deviation| > hard_limit: act whatever the cost
    spot_move: FloatArray  # half_width / |gamma|: spot move from a fresh hedge to the band edge


class BandPolicy(Protocol):
    """Anything that turns :class:`BandInputs` into a :class:`BandResult`."""

    def evaluate(self, inputs: BandInputs) -> BandResult: ...


def trigger_move(half_width: BandResult | npt.ArrayLike, gamma: npt.ArrayLike) -> FloatArray:
    """Spot move (quote per underlying) that takes a freshly hedged book to the band edge.

    ``H / |Gamma|`` for a half-width or a :class:`BandResult`; infinite where Gamma = 0 (no spot
    move changes the delta), never NaN. First order in the spot move (Gamma held fixed).
    """
    h = _f(half_width.half_width if isinstance(half_width, BandResult) else half_width)
    g = np.abs(_f(gamma))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(g > 0.0, h / np.where(g > 0.0, g, 1.0), np.inf)


def _result(inputs: BandInputs, half_width: FloatArray, hard_limit: npt.ArrayLike) -> BandResult:
    """Cap the band by the hard limit and decide; every array gets the shape of all inputs."""
    dev, hard, gam = _f(inputs.deviation), _f(hard_limit), _f(inputs.gamma)
    shape = np.broadcast_shapes(
        half_width.shape, hard.shape, *(np.shape(getattr(inputs, f.name)) for f in fields(inputs))
    )
    abs_dev = np.abs(dev)
    half = _full(np.minimum(half_width, hard), shape)
    return BandResult(
        half_width=half,
        act=_full(abs_dev > half, shape),
        urgent=_full(abs_dev > hard, shape),
        spot_move=_full(trigger_move(half, gam), shape),
    )


def _full(x: npt.NDArray[_T], shape: tuple[int, ...]) -> npt.NDArray[_T]:
    """``x`` with ``shape``, as a writeable ndarray (0-d for scalars, never a broadcast view)."""
    arr = np.asarray(x)
    return arr if arr.shape == shape else np.broadcast_to(arr, shape).copy()


def solve_band_quartic(a: npt.ArrayLike, b: npt.ArrayLike, c: npt.ArrayLike) -> FloatArray:
    """Positive root of ``a H^4 - b H - c = 0`` for ``a > 0``, ``b, c >= 0`` (vectorised).

    ``b = c = 0`` gives 0; ``a = 0`` (or a root beyond the float range) gives ``inf``. With
    ``s = max((2c/a)^(1/4), (2b/a)^(1/3))`` (so ``a s^4 >= b s + c``: an upper bound, at most
    ``2^(1/3)`` times the root) the scaled unknown ``y = H / s`` solves
    ``y^4 - B y - C = 0`` with ``B, C <= 1/2``; Newton from ``y = 1`` decreases monotonically to
    the root because the left side is convex and increasing there.
    """
    a_, b_, c_ = np.broadcast_arrays(_f(a), _f(b), _f(c))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
        a_pos = a_ > 0.0
        a_safe = np.where(a_pos, a_, 1.0)
        scale = np.maximum(np.sqrt(np.sqrt(2.0 * c_ / a_safe)), np.cbrt(2.0 * b_ / a_safe))
        solvable = a_pos & (scale > 0.0) & np.isfinite(scale)
        s = np.where(solvable, scale, 1.0)
        s3 = s * s * s
        big_b = np.where(solvable, b_ / (a_safe * s3), 0.0)
        big_c = np.where(solvable, c_ / (a_safe * s3 * s), 1.0)
        # y stays in [2^(-1/3), 1], so an absolute step test is a relative one
        y = np.ones_like(s)
        for _ in range(_NEWTON_MAX_STEPS):
            y3 = y * y * y
            step = (y3 * y - big_b * y - big_c) / (4.0 * y3 - big_b)
            y -= step
            if step.size == 0 or np.max(np.abs(step)) <= _NEWTON_TOLERANCE:
                break
        root = y * s
    zero = (b_ == 0.0) & (c_ == 0.0) & a_pos
    return np.where(solvable, root, np.where(zero, 0.0, np.inf))


def optimal_half_width(
    gamma: npt.ArrayLike,
    spot: npt.ArrayLike,
    risk_aversion: npt.ArrayLike,
    fixed_cost: npt.ArrayLike,
    proportional_cost: npt.ArrayLike,
) -> FloatArray:
    """Unconstrained cost-optimal half-width H (underlying units): root of
    ``(gamma_ra / 6) H^4 - lambda S Gamma^2 H - 2 K Gamma^2 = 0`` (module docstring).

    0 when Gamma = 0 or both costs are 0; ``inf`` when risk aversion is 0.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        g2 = np.square(_f(gamma))
        a = np.maximum(_f(risk_aversion), 0.0) / 6.0
        b = np.maximum(_f(proportional_cost), 0.0) * np.abs(_f(spot)) * g2
        c = 2.0 * np.maximum(_f(fixed_cost), 0.0) * g2
    return solve_band_quartic(a, b, c)


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


@dataclass(frozen=True)
class GasAdjustedBand:
    """Cost-optimal band ``clip(H, floor, hard_limit)`` with H from :func:`optimal_half_width`."""

    floor: npt.ArrayLike  # governance minimum half-width, underlying units
    hard_limit: npt.ArrayLike  # underlying units

    def evaluate(self, inputs: BandInputs) -> BandResult:
        h = optimal_half_width(
            inputs.gamma,
            inputs.spot,
            inputs.risk_aversion,
            inputs.fixed_cost,
            inputs.proportional_cost,
        )
        half = np.maximum(h, _f(self.floor))
        return _result(inputs, half, self.hard_limit)


@dataclass(frozen=True)
class FixedThreshold:
    """Act when ``|deviation| > threshold`` (capped by the hard limit)."""

    threshold: npt.ArrayLike  # underlying units
    hard_limit: npt.ArrayLike

    def evaluate(self, inputs: BandInputs) -> BandResult:
        return _result(inputs, _f(self.threshold), self.hard_limit)


@dataclass(frozen=True)
class TimeBased:
    """Act when ``interval_seconds`` have passed since the last rebalance and ``|deviation| >
    dust``, or at once past the hard limit; the reported half-width is ``dust`` once the clock
    has fired and the hard limit before."""

    interval_seconds: npt.ArrayLike
    hard_limit: npt.ArrayLike
    dust: npt.ArrayLike = DUST_UNITS

    def evaluate(self, inputs: BandInputs) -> BandResult:
        fired = _f(inputs.seconds_since_rebalance) >= _f(self.interval_seconds)
        half = np.where(fired, _f(self.dust), _f(self.hard_limit))
        return _result(inputs, half, self.hard_limit)


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
