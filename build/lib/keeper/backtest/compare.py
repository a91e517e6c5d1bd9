"""The gas-adjusted band against the best setting of each other live policy.

The saving is ``total_cost(other) - total_cost(band)``. Its standard error comes from a paired
moving-block bootstrap over paths (Kunsch 1989, "The jackknife and the bootstrap for general
stationary observations", Ann. Statist. 17): both policies ran on the same paths, so paths are
resampled jointly; overlapping real windows are resampled in blocks of ``bootstrap_block``.
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
COMPARED = (PolicyFamily.TIME_BASED, PolicyFamily.FIXED_THRESHOLD)
BOOTSTRAP_SAMPLES = 400


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


def best_by_family(result: StudyResult) -> dict[PolicyFamily, SettingRun]:
    """Lowest total cost of each family over all its policies' headline and sweep settings."""
    best: dict[PolicyFamily, SettingRun] = {}
    for policy in result.policies:
        family = policy.spec.family
        candidate = policy.best
        if family not in best or candidate.measures.total_cost < best[family].measures.total_cost:
            best[family] = candidate
    return best


def comparisons(result: StudyResult) -> list[Comparison]:
    """The band's best setting against the best time-based and the best fixed threshold."""
    best = best_by_family(result)
    band = best.get(PolicyFamily.GAS_ADJUSTED_BAND)
    if band is None:
        return []
    risk_aversion = result.scenario.risk_aversion
    rng = np.random.default_rng(result.scenario.seed)
    found = []
    for family in COMPARED:
        if family not in best:
            continue
        other = best[family]
        saving = other.measures.total_cost - band.measures.total_cost
        samples = block_indices(band.costs.size, result.bootstrap_block, BOOTSTRAP_SAMPLES, rng)
        spread = float(np.std(_savings(band, other, risk_aversion, samples), ddof=1))
        found.append(Comparison(family.value, band, other, saving, spread))
    return found


def block_indices(n_paths: int, block: int, samples: int, rng: np.random.Generator) -> IntArray:
    """``samples`` rows of ``n_paths`` path indices: random blocks of ``block`` consecutive
    paths, concatenated and cut to length (block 1 is the ordinary bootstrap)."""
    block = max(1, min(block, n_paths))
    n_blocks = math.ceil(n_paths / block)
    starts = rng.integers(0, n_paths - block + 1, size=(samples, n_blocks))
    index = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(samples, -1)
    return index[:, :n_paths]


def _savings(
    band: SettingRun, other: SettingRun, risk_aversion: float, index: IntArray
) -> FloatArray:
    def total(run: SettingRun) -> FloatArray:
        costs = run.costs[index].mean(axis=1)
        variance = run.hedge_cost[index].var(axis=1, ddof=1)
        result: FloatArray = costs + risk_aversion * variance
        return result

    return total(other) - total(band)
