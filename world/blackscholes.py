"""The world's books valued with the keeper's own greeks (``keeper.core.greeks``).

Only used to fund vaults so they start hedged and to size their bands. ``Leg`` holds plain
numbers (strike in USD, size in WETH, negative = short).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from keeper.core.greeks import SECONDS_PER_YEAR, FloatArray, Greeks, bs_greeks


@dataclass(frozen=True)
class Leg:
    """One option as plain numbers: strike in USD, size in WETH (negative = short)."""

    strike: float
    expiry: int  # unix seconds
    size: float
    is_call: bool


def _book_greeks(
    book: Iterable[Leg], spot: float, now: int, vol: float, rate: float
) -> tuple[Greeks, FloatArray]:
    legs = list(book)
    greeks = bs_greeks(
        spot,
        np.array([leg.strike for leg in legs], dtype=float),
        vol,
        rate,
        np.array([(leg.expiry - now) / SECONDS_PER_YEAR for leg in legs], dtype=float),
        np.array([leg.is_call for leg in legs], dtype=bool),
    )
    return greeks, np.array([leg.size for leg in legs], dtype=float)


def book_delta(book: Iterable[Leg], spot: float, now: int, vol: float, rate: float) -> float:
    """Net delta of the options alone, in WETH (expired legs at their intrinsic delta)."""
    greeks, sizes = _book_greeks(book, spot, now, vol, rate)
    return float(np.sum(sizes * greeks.delta))


def book_gamma(book: Iterable[Leg], spot: float, now: int, vol: float, rate: float) -> float:
    """Net gamma of the options, in WETH per USD (zero for expired legs)."""
    greeks, sizes = _book_greeks(book, spot, now, vol, rate)
    return float(np.sum(sizes * greeks.gamma))
