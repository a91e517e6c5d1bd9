"""The vault's option book along price paths, priced by the live keeper's greeks
(``keeper.core.greeks.bs_greeks``, Black-Scholes-Merton, Hull ch. 15 and 19).

Sizes are signed underlying units (negative = written), so the book's delta is
``sum(size * delta)`` and the writer's liability is ``-sum(size * value)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keeper.backtest.scenario import Book
from keeper.core.greeks import bs_greeks

FloatArray = npt.NDArray[np.float64]
_ROWS_PER_CHUNK = 64  # time steps priced per call, to bound the temporaries


@dataclass(frozen=True)
class BookGreeks:
    """Delta and gamma of the options (not the hedge) at each decision step, time-major."""

    delta: FloatArray  # (n_steps, n_paths), underlying units
    gamma: FloatArray  # (n_steps, n_paths), underlying units per quote unit


def book_value(book: Book, spot: float, t_years: float) -> float:
    """Black-Scholes value of the options to their holder (negative for a written book)."""
    total = 0.0
    for leg in book.legs:
        price = bs_greeks(spot, leg.strike, book.vol, book.rate, t_years, leg.is_call).price
        total += leg.size * float(np.asarray(price))
    return total


def book_greeks(book: Book, spot: FloatArray, t_years: FloatArray) -> BookGreeks:
    """Greeks at every row of ``spot`` (n_steps, n_paths) with time to expiry ``t_years``
    (n_steps,); every call prices all paths of a block of steps at once."""
    n_steps, n_paths = spot.shape
    delta = np.zeros((n_steps, n_paths))
    gamma = np.zeros((n_steps, n_paths))
    for start in range(0, n_steps, _ROWS_PER_CHUNK):
        rows = slice(start, min(start + _ROWS_PER_CHUNK, n_steps))
        tau = t_years[rows, None]
        for leg in book.legs:
            greeks = bs_greeks(spot[rows], leg.strike, book.vol, book.rate, tau, leg.is_call)
            delta[rows] += leg.size * np.asarray(greeks.delta)
            gamma[rows] += leg.size * np.asarray(greeks.gamma)
    return BookGreeks(delta, gamma)


def payoff_owed(book: Book, spot_at_expiry: FloatArray) -> FloatArray:
    """What the writer pays at expiry: ``-sum(size * max(w (S_T - K), 0))``, w = +1 call, -1 put."""
    owed = np.zeros_like(spot_at_expiry)
    for leg in book.legs:
        sign = 1.0 if leg.is_call else -1.0
        owed -= leg.size * np.maximum(sign * (spot_at_expiry - leg.strike), 0.0)
    return owed
