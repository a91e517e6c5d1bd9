"""What a policy controls, and the band against the best setting of every other policy.

Decomposition (per setting, same paths): with ``C0`` the hedging cost of the zero-cost
every-step hedge (the part no rebalancing rule can touch: implied-vs-realised vol, discrete
hedging at the data's step) and ``E = C - C0`` what the policy adds (its costs and its
hedging error),

    total = costs + ra Var(C) = ra Var(C0)         (unhedgeable)
                              + 2 ra Cov(C0, E)     (covariance)
                              + costs + ra Var(E)   (the policy's own costs and error)

exactly (sample moments, ddof = 1). ``controllable = total - unhedgeable``.

Paired standard errors: the saving ``total(other) - total(band)`` is the mean over paths of
``phi_other - phi_band`` with ``phi = c_i + ra n/(n-1) (C_i - mean C)^2`` (the influence
function of the mean-variance total); its standard error uses the Newey-West (1987, "A simple,
positive semi-definite, heteroskedasticity and autocorrelation consistent covariance matrix",
Econometrica 55) long-run variance with Bartlett weights and ``lags`` = twice the number of
later windows a real window overlaps (0 for independent simulated paths): Bartlett weights
shrink the overlap's autocovariances, and twice the overlap recovers most of them (for an
overlap of 6, 82% of the long-run variance instead of 67%).

In and out of sample (real windows): every family's setting is picked on the first half of the
windows (in time order) and evaluated on the second half.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keeper.backtest.scenario import PolicyFamily
from keeper.backtest.study import SettingRun, StudyResult

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
COMPARED = (PolicyFamily.TIME_BASED, PolicyFamily.FIXED_THRESHOLD, PolicyFamily.DP_OPTIMAL)


@dataclass(frozen=True)
class Decomposition:
    total: float
    unhedgeable: float  # ra Var(C0)
    covariance: float  # 2 ra Cov(C0, E)
    own_costs: float  # mean gas + fees + slippage
    own_error: float  # ra Var(E)

    @property
    def controllable(self) -> float:
        return self.total - self.unhedgeable


@dataclass(frozen=True)
class Row:
    """One family's chosen setting on one sample, against the band's chosen setting."""

    policy: str
    family: str
    param: float | None
    parts: Decomposition
    saving: float  # total(this) - total(band): > 0 means the band is cheaper
    saving_stderr: float  # paired, Newey-West

    @property
    def saving_fraction(self) -> float:
        return self.saving / self.parts.total if self.parts.total else math.nan


@dataclass(frozen=True)
class Comparison:
    against: str  # the other family
    band: SettingRun  # the band's best setting
    other: SettingRun  # the other family's best setting
    saving: float  # other total cost - band total cost, quote units (< 0: the band loses)
    saving_stderr: float

    @property
    def saving_fraction(self) -> float:
        other = self.other.measures.total_cost
        return self.saving / other if other else math.nan


def decompose(
    run: SettingRun, baseline: FloatArray, risk_aversion: float, index: IntArray | None = None
) -> Decomposition:
    """The decomposition of the module docstring over the paths in ``index`` (all: None)."""
    pick = slice(None) if index is None else index
    c0, cost, costs = baseline[pick], run.hedge_cost[pick], run.costs[pick]
    error = cost - c0
    ddof = 1 if c0.size > 1 else 0
    cov = float(np.cov(c0, error, ddof=ddof)[0, 1]) if c0.size > 1 else 0.0
    return Decomposition(
        total=float(costs.mean()) + risk_aversion * float(np.var(cost, ddof=ddof)),
        unhedgeable=risk_aversion * float(np.var(c0, ddof=ddof)),
        covariance=2.0 * risk_aversion * cov,
        own_costs=float(costs.mean()),
        own_error=risk_aversion * float(np.var(error, ddof=ddof)),
    )


def influence(run: SettingRun, risk_aversion: float, index: IntArray | None = None) -> FloatArray:
    """Per path ``c_i + ra n/(n-1) (C_i - mean C)^2``: its mean is the setting's total."""
    pick = slice(None) if index is None else index
    cost, costs = run.hedge_cost[pick], run.costs[pick]
    n = cost.size
    scale = n / (n - 1) if n > 1 else 1.0
    result: FloatArray = costs + risk_aversion * scale * np.square(cost - cost.mean())
    return result


def newey_west_stderr(values: FloatArray, lags: int) -> float:
    """Standard error of the mean of a series with Bartlett-weighted autocovariances."""
    n = values.size
    if n < 2:
        return math.nan
    centred = values - values.mean()
    long_run = float(centred @ centred) / n
    for lag in range(1, min(lags, n - 1) + 1):
        weight = 1.0 - lag / (lags + 1.0)
        long_run += 2.0 * weight * float(centred[lag:] @ centred[:-lag]) / n
    return math.sqrt(max(long_run, 0.0) / n)


def _settings(result: StudyResult) -> dict[PolicyFamily, list[SettingRun]]:
    found: dict[PolicyFamily, list[SettingRun]] = {}
    for policy in result.policies:
        runs = [policy.headline, *policy.sweep]
        found.setdefault(policy.spec.family, []).extend(runs)
    return found


def _choose(runs: list[SettingRun], ra: float, index: IntArray | None) -> SettingRun:
    return min(runs, key=lambda run: float(influence(run, ra, index).mean()))


def best_by_family(result: StudyResult) -> dict[PolicyFamily, SettingRun]:
    """Lowest total cost of each family over all its policies' headline and sweep settings."""
    ra = result.scenario.risk_aversion
    return {family: _choose(runs, ra, None) for family, runs in _settings(result).items()}


def rows(result: StudyResult, tune: IntArray | None, test: IntArray | None) -> list[Row]:
    """Each family's setting chosen on the ``tune`` paths, decomposed on the ``test`` paths
    (None: all), with its paired saving against the band's chosen setting."""
    ra = result.scenario.risk_aversion
    chosen = {family: _choose(runs, ra, tune) for family, runs in _settings(result).items()}
    band = chosen.get(PolicyFamily.GAS_ADJUSTED_BAND)
    out = []
    for family, run in chosen.items():
        phi = influence(run, ra, test)
        if band is not None:
            diff = phi - influence(band, ra, test)
            saving, stderr = float(diff.mean()), newey_west_stderr(diff, result.overlap_lags)
        else:
            saving, stderr = math.nan, math.nan
        parts = decompose(run, result.baseline, ra, test)
        out.append(
            Row(run.measures.policy, family.value, run.measures.param, parts, saving, stderr)
        )
    return out


def halves(result: StudyResult) -> tuple[IntArray, IntArray] | None:
    """(first half, second half) of the real windows in time order; None for simulated paths."""
    if result.window_starts is None:
        return None
    order = np.argsort(result.window_starts, kind="stable")
    middle = order.size // 2
    return order[:middle], order[middle:]


def comparisons(result: StudyResult) -> list[Comparison]:
    """The band's best setting against the best of each other compared family (all paths)."""
    best = best_by_family(result)
    band = best.get(PolicyFamily.GAS_ADJUSTED_BAND)
    if band is None:
        return []
    ra = result.scenario.risk_aversion
    found = []
    for family in COMPARED:
        if family not in best:
            continue
        other = best[family]
        diff = influence(other, ra) - influence(band, ra)
        stderr = newey_west_stderr(diff, result.overlap_lags)
        saving = other.measures.total_cost - band.measures.total_cost
        found.append(Comparison(family.value, band, other, saving, stderr))
    return found
