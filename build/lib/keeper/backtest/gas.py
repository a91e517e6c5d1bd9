"""Gas price paths (the base fee, in gwei), time-major like the price paths.

The stochastic model is a mean-reverting log process with spikes: ``x = ln(base fee)``
follows an Ornstein-Uhlenbeck process around ``ln(level)``, sampled exactly,
``x' = mu + (x - mu) e^{-kappa dt} + sigma sqrt((1 - e^{-2 kappa dt}) / (2 kappa)) Z``
(Uhlenbeck & Ornstein 1930; the exact discretisation is in Glasserman, *Monte Carlo Methods
in Financial Engineering*, 3.3), plus spikes: a Poisson process of arrivals, each adding
``ln(spike_multiplier)`` to ``x`` and decaying with the same half-life, so a spike that arrived
``u`` before the end of a step adds ``ln(spike_multiplier) e^{-kappa u}`` (exact for any step,
even one longer than the half-life).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class ConstantGas:
    base_fee_gwei: float


@dataclass(frozen=True)
class StochasticGas:
    base_fee_gwei: float  # the level the log process reverts to (its median without spikes)
    half_life_seconds: float  # ln 2 / kappa
    vol_per_sqrt_day: float  # sigma of ln(base fee), per sqrt(day)
    spikes_per_day: float
    spike_multiplier: float  # a spike multiplies the base fee by this


GasModel = ConstantGas | StochasticGas


def gas_paths(
    model: GasModel, step_seconds: float, n_steps: int, n_paths: int, rng: np.random.Generator
) -> FloatArray:
    """Base fee in gwei, shape (n_steps + 1, n_paths); a read-only view when constant."""
    if isinstance(model, ConstantGas):
        return np.broadcast_to(np.float64(model.base_fee_gwei), (n_steps + 1, n_paths))
    return _stochastic(model, step_seconds / SECONDS_PER_DAY, n_steps, n_paths, rng)


def _stochastic(
    model: StochasticGas, dt_days: float, n_steps: int, n_paths: int, rng: np.random.Generator
) -> FloatArray:
    kappa = math.log(2.0) / (model.half_life_seconds / SECONDS_PER_DAY)  # per day
    decay = math.exp(-kappa * dt_days)
    noise = model.vol_per_sqrt_day * math.sqrt((1.0 - decay**2) / (2.0 * kappa))
    level = math.log(model.base_fee_gwei)
    spike = math.log(model.spike_multiplier)
    spike_rate = model.spikes_per_day * dt_days
    log_fee = np.empty((n_steps + 1, n_paths))
    log_fee[0] = level
    for step in range(n_steps):
        shock = noise * rng.standard_normal(n_paths)
        shock += spike * _decayed_spikes(rng, spike_rate, kappa * dt_days, n_paths)
        log_fee[step + 1] = level + (log_fee[step] - level) * decay + shock
    fee: FloatArray = np.exp(log_fee)
    return fee


def _decayed_spikes(
    rng: np.random.Generator, rate: float, decay_per_step: float, n_paths: int
) -> FloatArray:
    """Per path, the sum over this step's spikes of ``e^{-kappa u}``, ``u`` the time from the
    spike to the end of the step (arrival times of a Poisson process are uniform given N)."""
    counts = rng.poisson(rate, n_paths)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(n_paths)
    weights = np.exp(-decay_per_step * rng.random(total))
    owners = np.repeat(np.arange(n_paths), counts)
    summed: FloatArray = np.bincount(owners, weights=weights, minlength=n_paths).astype(np.float64)
    return summed
