"""Price-path, gas-path and cost models of the backtester."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keeper.backtest.costs import CostModel
from keeper.backtest.gas import ConstantGas, StochasticGas, gas_paths
from keeper.backtest.paths import GbmModel, MertonModel, gbm_paths, merton_paths
from keeper.backtest.scenario import CostSettings

DAY = 86400.0
YEAR = 365 * DAY


def test_gbm_terminal_moments() -> None:
    rng = np.random.default_rng(1)
    paths = gbm_paths(GbmModel(drift=0.3, vol=0.8), 100.0, 30 * DAY, 2, 40_000, rng)
    t = 60 * DAY / YEAR
    log_return = np.log(paths.spot[-1] / 100.0)
    assert paths.spot.shape == (3, 40_000)
    assert log_return.mean() == pytest.approx((0.3 - 0.32) * t, abs=4 * 0.8 * math.sqrt(t / 40_000))
    assert log_return.std() == pytest.approx(0.8 * math.sqrt(t), rel=0.02)


def test_merton_jumps_are_compensated_and_add_variance() -> None:
    rng = np.random.default_rng(2)
    model = MertonModel(drift=0.1, vol=0.5, jump_intensity=30.0, jump_mean=-0.05, jump_std=0.1)
    paths = merton_paths(model, 100.0, 5 * DAY, 6, 60_000, rng)
    t = 30 * DAY / YEAR
    terminal = paths.spot[-1]
    stderr = terminal.std() / math.sqrt(terminal.size)
    assert terminal.mean() == pytest.approx(100.0 * math.exp(0.1 * t), abs=4 * stderr)
    expected_var = (0.25 + 30.0 * (0.05**2 + 0.1**2)) * t
    assert np.log(terminal / 100.0).var() == pytest.approx(expected_var, rel=0.05)


def test_constant_gas_is_a_flat_view() -> None:
    fee = gas_paths(ConstantGas(25.0), 600.0, 10, 4, np.random.default_rng(0))
    assert fee.shape == (11, 4) and np.all(fee == 25.0)


def test_stochastic_gas_reverts_to_its_level_and_spikes_raise_it() -> None:
    quiet = StochasticGas(
        30.0,
        half_life_seconds=7200.0,
        vol_per_sqrt_day=1.0,
        spikes_per_day=0.0,
        spike_multiplier=1.0,
    )
    fee = gas_paths(quiet, 600.0, 288, 4000, np.random.default_rng(3))
    late = np.log(fee[-1])
    kappa = math.log(2) / (2 / 24)  # per day
    assert np.median(fee[-1]) == pytest.approx(30.0, rel=0.03)
    assert late.std() == pytest.approx(1.0 / math.sqrt(2 * kappa), rel=0.05)
    spiky = StochasticGas(30.0, 7200.0, 1.0, spikes_per_day=4.0, spike_multiplier=4.0)
    fee = gas_paths(spiky, 600.0, 288, 4000, np.random.default_rng(3))
    # each spike adds ln 4, decaying at kappa: the mean of ln(fee) rises by rate x ln 4 / kappa
    assert np.log(fee[-1]).mean() == pytest.approx(math.log(30) + 4 * math.log(4) / kappa, abs=0.05)
    assert fee.max() > 4 * 30.0


def test_gas_cost_uses_the_path_price_and_splits_a_batch() -> None:
    settings = CostSettings(180_000, 120_000, 3, 1.0, dex_fee_bps=5.0, slippage_bps_per_unit=2.0)
    model = CostModel(settings)
    assert model.gas_units_per_vault == pytest.approx((180_000 + 2 * 120_000) / 3)
    cost = model.gas_quote(np.array([29.0, 59.0]), np.array([3000.0, 2000.0]))
    np.testing.assert_allclose(cost, [140_000 * 30e-9 * 3000.0, 140_000 * 60e-9 * 2000.0])
    trade = model.trade(np.array([-4.0, 0.0]), np.array([2000.0, 2000.0]))
    np.testing.assert_allclose(trade.fees, [5e-4 * 8000.0, 0.0])
    np.testing.assert_allclose(trade.slippage, [2e-4 * 4.0 * 8000.0, 0.0])
    assert model.band_lambda == pytest.approx(5e-4)
