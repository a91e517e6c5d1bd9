"""What a policy controls: the decomposition adds up, and the paired standard errors."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from keeper.backtest.compare import decompose, halves, influence, newey_west_stderr, rows
from keeper.backtest.scenario import load_scenario
from keeper.backtest.study import overlap_lags, run_study


def _study():  # type: ignore[no-untyped-def]
    base = load_scenario("eth_30d_short_call")
    policies = tuple(p for p in base.policies if p.family.value != "dp_optimal")
    scenario = replace(base, n_paths=300, n_steps=120, step_seconds=base.horizon_seconds / 120)
    return run_study(replace(scenario, policies=policies), sweep=False)


def test_the_decomposition_adds_up_to_the_total_of_every_policy() -> None:
    result = _study()
    ra = result.scenario.risk_aversion
    for policy in result.policies:
        run = policy.headline
        parts = decompose(run, result.baseline, ra)
        assert parts.total == pytest.approx(run.measures.total_cost, rel=1e-12)
        summed = parts.unhedgeable + parts.covariance + parts.own_costs + parts.own_error
        assert summed == pytest.approx(parts.total, rel=1e-9)
        assert float(influence(run, ra).mean()) == pytest.approx(parts.total, rel=1e-12)
    every = next(p for p in result.policies if p.spec.family.value == "every_step")
    # the every-step hedge's own error is its costs alone: no hedging error beyond the baseline
    error = every.headline.hedge_cost - result.baseline
    np.testing.assert_allclose(error, every.headline.costs, rtol=1e-9, atol=1e-6)


def test_paired_rows_compare_against_the_band() -> None:
    result = _study()
    found = {r.family: r for r in rows(result, None, None)}
    assert found["gas_adjusted_band"].saving == 0.0
    for row in found.values():
        assert math.isfinite(row.saving_stderr) and row.saving_stderr >= 0.0
    assert found["time_based"].saving > 3 * found["time_based"].saving_stderr
    assert halves(result) is None  # simulated paths: no in/out-of-sample split


def test_newey_west_widens_for_overlapping_windows() -> None:
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(20_000)
    overlapping = np.convolve(noise, np.ones(7), mode="valid")  # each shares 6 of 7 shocks
    iid = newey_west_stderr(overlapping, 0)
    corrected = newey_west_stderr(overlapping, 12)  # twice the overlap, as the study uses
    # the true standard error of the mean is sqrt(7^2 / n) = 7 / sqrt(n); iid says sqrt(7 / n);
    # Bartlett weights at 12 lags recover sum (1 - l/13) of the autocovariances: 40.4 of 49
    truth = 7 / math.sqrt(overlapping.size)
    assert corrected == pytest.approx(truth * math.sqrt(40.4 / 49), rel=0.05)
    assert iid == pytest.approx(math.sqrt(7 / overlapping.size), rel=0.05)
    assert newey_west_stderr(noise, 0) == pytest.approx(1 / math.sqrt(noise.size), rel=0.05)


def test_overlap_lags_from_window_starts() -> None:
    day = 86_400
    starts = np.arange(0, 100 * day, 2 * day, dtype=np.int64)
    assert overlap_lags(14 * day, starts) == 12  # 6 overlapping windows, twice
    assert overlap_lags(14 * day, None) == 0
