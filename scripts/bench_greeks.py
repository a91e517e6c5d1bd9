"""Time the vectorised risk math: bs_greeks, portfolio_greeks and the gas-adjusted band.

Run: ``.venv/bin/python scripts/bench_greeks.py``. Prints a table; asserts nothing (not a test).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keeper.core.bands import BandInputs, GasAdjustedBand
from keeper.core.greeks import SECONDS_PER_YEAR, bs_greeks
from keeper.core.portfolio import LegArrays, portfolio_greeks

SIZES = (1_000, 100_000, 1_000_000)
LEGS_PER_VAULT = 10
NOW = 1_700_000_000


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _row(name: str, n: int, seconds: float) -> str:
    return f"{name:<34} {n:>10,d} {seconds * 1e3:>10.2f} {seconds / n * 1e9:>10.1f}"


def _bench(n: int, rng: np.random.Generator) -> list[str]:
    repeats = 20 if n < 1_000_000 else 5
    spot = rng.uniform(2000.0, 4000.0, n)
    strike = rng.uniform(1500.0, 4500.0, n)
    vol = rng.uniform(0.3, 1.2, n)
    t = rng.uniform(1 / 365, 1.0, n)
    call = rng.random(n) < 0.5
    rows = [
        _row("bs_greeks", n, _best_of(lambda: bs_greeks(spot, strike, vol, 0.05, t, call), repeats))
    ]

    n_vaults = max(n // LEGS_PER_VAULT, 1)
    legs = LegArrays(
        vault_index=rng.integers(0, n_vaults, n).astype(np.intp),
        strike=strike,
        expiry=NOW + t * SECONDS_PER_YEAR,
        size=rng.normal(0.0, 10.0, n),
        is_call=call,
    )
    vault_spot = rng.uniform(2000.0, 4000.0, n_vaults)
    seconds = _best_of(lambda: portfolio_greeks(vault_spot, 0.8, 0.05, NOW, legs), repeats)
    rows.append(_row(f"portfolio_greeks ({n_vaults:,d} vaults)", n, seconds))

    inputs = BandInputs(
        deviation=rng.normal(0.0, 5.0, n),
        gamma=-(10 ** rng.uniform(-4, 0, n)),
        spot=spot,
        vol=vol,
        t_years=t,
        risk_aversion=1e-4,
        fixed_cost=rng.uniform(0.5, 50.0, n),
        proportional_cost=5e-4,
        seconds_since_rebalance=600.0,
    )
    band = GasAdjustedBand(floor=0.05, hard_limit=50.0)
    rows.append(_row("GasAdjustedBand", n, _best_of(lambda: band.evaluate(inputs), repeats)))
    return rows


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'function':<34} {'legs':>10} {'ms (best)':>10} {'ns/leg':>10}")
    for n in SIZES:
        for row in _bench(n, rng):
            print(row)


if __name__ == "__main__":
    main()
