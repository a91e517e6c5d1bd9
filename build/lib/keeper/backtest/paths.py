"""Price paths, laid out time-major: ``spot[i, j]`` is path ``j`` at step ``i`` (0..n_steps).

* Geometric Brownian motion, sampled exactly:
  ``S(t+dt) = S(t) exp((mu - sigma^2/2) dt + sigma sqrt(dt) Z)`` (Hull, *Options, Futures and
  Other Derivatives*, ch. 15).
* Merton (1976) jump-diffusion: the same diffusion plus a compound Poisson process of
  log-normal jumps ``ln(1+J) ~ N(m, s^2)`` at rate ``lambda`` per year, with the drift
  compensated by ``lambda k``, ``k = exp(m + s^2/2) - 1``, so that ``E[S(t)] = S(0) e^{mu t}``.
* Real history: rolling windows over a ``PriceSeries``, each rescaled to start at the
  scenario's spot (the window's returns are replayed at today's price level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keeper.backtest.durations import SECONDS_PER_YEAR
from keeper.backtest.prices import PriceSeries
from keeper.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PricePaths:
    """``spot`` has shape (n_steps + 1, n_paths); row 0 is the start."""

    spot: FloatArray
    step_seconds: float
    window_starts: IntArray | None = None  # unix seconds of each real window's first point

    @property
    def n_steps(self) -> int:
        return int(self.spot.shape[0]) - 1

    @property
    def n_paths(self) -> int:
        return int(self.spot.shape[1])


@dataclass(frozen=True)
class GbmModel:
    drift: float  # mu, per year
    vol: float  # sigma, per sqrt(year)


@dataclass(frozen=True)
class MertonModel:
    drift: float  # mu, per year, jumps included
    vol: float  # diffusion sigma, per sqrt(year)
    jump_intensity: float  # lambda, jumps per year
    jump_mean: float  # m, mean of ln(1 + J)
    jump_std: float  # s, std of ln(1 + J)


def gbm_paths(
    model: GbmModel,
    spot: float,
    step_seconds: float,
    n_steps: int,
    n_paths: int,
    rng: np.random.Generator,
) -> PricePaths:
    """Exact GBM samples on the step grid."""
    dt = step_seconds / SECONDS_PER_YEAR
    shocks = rng.standard_normal((n_steps, n_paths))
    log_steps = (model.drift - 0.5 * model.vol**2) * dt + model.vol * math.sqrt(dt) * shocks
    return PricePaths(_from_log_steps(spot, log_steps), step_seconds)


def merton_paths(
    model: MertonModel,
    spot: float,
    step_seconds: float,
    n_steps: int,
    n_paths: int,
    rng: np.random.Generator,
) -> PricePaths:
    """Merton jump-diffusion samples: per step a Poisson number of jumps N and a jump log
    size ``N m + sqrt(N) s Z'`` (the sum of N normal log jumps)."""
    dt = step_seconds / SECONDS_PER_YEAR
    compensator = model.jump_intensity * (math.exp(model.jump_mean + 0.5 * model.jump_std**2) - 1)
    drift = (model.drift - compensator - 0.5 * model.vol**2) * dt
    log_steps = drift + model.vol * math.sqrt(dt) * rng.standard_normal((n_steps, n_paths))
    jumps = rng.poisson(model.jump_intensity * dt, (n_steps, n_paths))
    jump_shocks = rng.standard_normal((n_steps, n_paths))
    log_steps += jumps * model.jump_mean + np.sqrt(jumps) * model.jump_std * jump_shocks
    return PricePaths(_from_log_steps(spot, log_steps), step_seconds)


def _from_log_steps(spot: float, log_steps: FloatArray) -> FloatArray:
    n_paths = log_steps.shape[1]
    log_path = np.vstack([np.zeros((1, n_paths)), np.cumsum(log_steps, axis=0)])
    result: FloatArray = spot * np.exp(log_path)
    return result


def history_paths(
    series: PriceSeries,
    spot: float,
    step_seconds: float,
    n_steps: int,
    stride_seconds: float,
    max_paths: int | None = None,
) -> PricePaths:
    """Rolling windows of ``n_steps`` steps over ``series``, one path per window.

    The step and the stride must be whole multiples of the series' interval; when
    ``max_paths`` is below the number of windows, evenly spaced windows are kept.
    """
    every = _multiple(step_seconds, series.interval_seconds, "step")
    stride = _multiple(stride_seconds, series.interval_seconds, "paths.window_stride")
    span = n_steps * every
    starts = np.arange(0, series.close.size - span, stride)
    if starts.size == 0:
        raise ConfigError(
            f"{series.report.source}: history of {series.close.size} points is shorter than one "
            f"window of {span + 1} points"
        )
    if max_paths is not None and max_paths < starts.size:
        starts = starts[np.linspace(0, starts.size - 1, max_paths).round().astype(np.int64)]
    index = starts[None, :] + every * np.arange(n_steps + 1)[:, None]
    windows = series.close[index]
    rescaled: FloatArray = spot * windows / windows[0]
    return PricePaths(rescaled, step_seconds, series.timestamps[starts])


def _multiple(seconds: float, interval: int, field: str) -> int:
    ratio = seconds / interval
    count = round(ratio)
    if count < 1 or abs(ratio - count) > 1e-9:
        raise ConfigError(
            f"field '{field}': {seconds:g} s is not a whole multiple of the data's "
            f"{interval}-second interval (real data cannot be sampled finer than it was recorded)"
        )
    return count
