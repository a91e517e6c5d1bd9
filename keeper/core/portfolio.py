"""Per-vault greeks of many option books in one vectorised pass.

All legs of all vaults are flattened into arrays with a per-leg vault index, priced once with
:func:`keeper.core.greeks.bs_greeks_flat`, and summed per vault with ``np.bincount``. A vault's
greeks are the size-weighted sums of its legs' Black-Scholes greeks (Hull, *Options, Futures, and
Other Derivatives*, ch. 19: greeks of a portfolio are additive).

Units: spot and strike are quote per underlying, sizes are signed underlying units (negative =
the vault wrote the option), so delta is in underlying units, gamma = d(delta)/d(spot) in
underlying units per (quote per underlying), vega in quote per 1.00 of vol, theta in quote per year.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keeper.core.greeks import SECONDS_PER_YEAR, BoolArray, FloatArray, bs_greeks_flat
from keeper.core.types import WAD, VaultState

IndexArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class LegArrays:
    """Every option leg of every vault, one element per leg (all arrays equally long)."""

    vault_index: IndexArray  # which vault (position in the per-vault arrays) holds the leg
    strike: FloatArray  # quote per underlying
    expiry: FloatArray  # unix seconds
    size: FloatArray  # signed underlying units; < 0 means the vault wrote the option
    is_call: BoolArray

    def __post_init__(self) -> None:
        n = self.vault_index.shape
        for name in ("strike", "expiry", "size", "is_call"):
            if getattr(self, name).shape != n:
                raise ValueError(f"LegArrays.{name} has shape {getattr(self, name).shape}, not {n}")


@dataclass(frozen=True)
class PortfolioGreeks:
    """Per-vault risk, every array indexed like the input vault list."""

    value: FloatArray  # mark-to-model value of the options, quote units
    option_delta: FloatArray  # underlying units
    hedge_delta: FloatArray  # underlying held by the vault, underlying units
    net_delta: FloatArray  # option_delta + hedge_delta
    gamma: FloatArray  # underlying units per (quote per underlying)
    vega: FloatArray  # quote units per 1.00 of volatility
    theta: FloatArray  # quote units per year
    t_years: FloatArray  # |size|-weighted time to expiry of the live legs, years (0 if none)


def _per_vault(values: npt.ArrayLike, n_vaults: int, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] not in (1, n_vaults)):
        raise ValueError(f"{name} must be a scalar or have one entry per vault ({n_vaults})")
    return np.broadcast_to(arr, (n_vaults,))


def portfolio_greeks(
    spot: npt.ArrayLike,
    vol: npt.ArrayLike,
    rate: npt.ArrayLike,
    now: npt.ArrayLike,
    legs: LegArrays,
    hedge_units: npt.ArrayLike = 0.0,
) -> PortfolioGreeks:
    """Sum the legs' greeks per vault in one vectorised pass.

    ``spot`` (1-d) fixes the number of vaults; ``vol``, ``rate``, ``now`` (unix seconds) and
    ``hedge_units`` (underlying held, underlying units) are scalars or one value per vault, so a
    backtester can treat each simulated path as a "vault" with its own spot and clock.
    """
    spot_v = np.asarray(spot, dtype=np.float64).reshape(-1)
    n = spot_v.shape[0]
    vol_v = _per_vault(vol, n, "vol")
    rate_v = _per_vault(rate, n, "rate")
    now_v = _per_vault(now, n, "now")
    hedge_v = _per_vault(hedge_units, n, "hedge_units")
    idx = legs.vault_index
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"leg vault_index outside [0, {n})")

    t_leg = (legs.expiry - now_v[idx]) / SECONDS_PER_YEAR
    g = bs_greeks_flat(spot_v[idx], legs.strike, vol_v[idx], rate_v[idx], t_leg, legs.is_call)

    def total(per_unit: FloatArray) -> FloatArray:
        return np.bincount(idx, weights=per_unit * legs.size, minlength=n).astype(np.float64)

    live_weight = np.where(t_leg > 0.0, np.abs(legs.size), 0.0)
    weight_sum = np.bincount(idx, weights=live_weight, minlength=n)
    weighted_t = np.bincount(idx, weights=live_weight * np.maximum(t_leg, 0.0), minlength=n)
    t_years = np.divide(weighted_t, weight_sum, out=np.zeros(n), where=weight_sum > 0.0)

    option_delta = total(g.delta)
    return PortfolioGreeks(
        value=total(g.price),
        option_delta=option_delta,
        hedge_delta=np.array(hedge_v, dtype=np.float64),
        net_delta=option_delta + hedge_v,
        gamma=total(g.gamma),
        vega=total(g.vega),
        theta=total(g.theta),
        t_years=t_years,
    )


def legs_from_states(states: Sequence[VaultState]) -> LegArrays:
    """Flatten the books of ``states``: strikes from oracle decimals, sizes from underlying base
    units (``underlyingDecimals``, as the vault scales them)."""
    count = sum(len(s.book) for s in states)
    vault_index = np.empty(count, dtype=np.intp)
    strike = np.empty(count, dtype=np.float64)
    expiry = np.empty(count, dtype=np.float64)
    size = np.empty(count, dtype=np.float64)
    is_call = np.empty(count, dtype=np.bool_)
    i = 0
    for v, state in enumerate(states):
        scale = 10**state.oracle.decimals
        for leg in state.book:
            vault_index[i] = v
            strike[i] = leg.strike / scale
            expiry[i] = leg.expiry
            size[i] = leg.size / state.underlying_unit
            is_call[i] = leg.is_call
            i += 1
    return LegArrays(vault_index, strike, expiry, size, is_call)


def portfolio_greeks_for_states(
    states: Sequence[VaultState], now: int, vol: npt.ArrayLike | None = None
) -> PortfolioGreeks:
    """Greeks of every vault in ``states`` at ``now`` (unix seconds), indexed like ``states``.

    Spot is the vault's oracle answer, vol (unless ``vol`` gives one per vault, e.g. a realised
    estimate) and rate its ``VaultParams`` wads, the hedge its ``underlying_balance`` (so
    ``net_delta`` = option delta + underlying_balance / 10**underlying_decimals).
    """
    spot = np.array([s.oracle.price for s in states], dtype=np.float64)
    if vol is None:
        vol = np.array([s.params.implied_vol_wad / WAD for s in states], dtype=np.float64)
    rate = np.array([s.params.risk_free_rate_wad / WAD for s in states], dtype=np.float64)
    hedge = np.array([s.underlying_balance / s.underlying_unit for s in states], dtype=np.float64)
    return portfolio_greeks(spot, vol, rate, now, legs_from_states(states), hedge)
