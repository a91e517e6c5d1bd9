"""The dynamic-programming optimum: its gas chain, its interpolation, and that it is optimal."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from keeper.backtest.dp import _lagrange4, fit_gas_chain
from keeper.backtest.gas import ConstantGas, StochasticGas
from keeper.backtest.scenario import (
    DEFAULT_DATA_DIR,
    DpGrid,
    HistoryModel,
    PolicyFamily,
    PolicySpec,
    Scenario,
    find_scenario,
    load_scenario,
    parse_scenario,
)
from keeper.backtest.study import build_market, run_policy, solve_dp
from keeper.errors import ConfigError

GRID = DpGrid(spot_nodes=21, deviation_nodes=41, deviation_max=25.0, gas_states=5)


def _small() -> Scenario:
    """eth_30d_short_call at hourly decisions over 10 days: quick, still many trades."""
    base = load_scenario("eth_30d_short_call")
    return replace(base, n_paths=2000, n_steps=240, step_seconds=3600.0)


def test_gas_chain_is_a_stochastic_matrix_over_rising_levels() -> None:
    model = StochasticGas(30.0, 7200.0, 1.0, 2.0, 4.0)
    chain = fit_gas_chain(model, 7, 600.0, 500, seed=3)
    np.testing.assert_allclose(chain.transition.sum(axis=1), 1.0)
    assert np.all(np.diff(chain.levels) > 0)
    # persistent gas: staying put is the likeliest move from every state
    assert np.all(np.argmax(chain.transition, axis=1) == np.arange(7))
    np.testing.assert_array_equal(chain.state_of([1.0, 1e4]), [0, 6])
    np.testing.assert_array_equal(chain.state_of(chain.levels), np.arange(7))
    constant = fit_gas_chain(ConstantGas(12.0), 7, 600.0, 10, seed=0)
    assert constant.levels.tolist() == [12.0] and constant.transition.tolist() == [[1.0]]


def test_cubic_weights_reproduce_cubics() -> None:
    p = np.linspace(0.0, 0.99, 7)
    weights = _lagrange4(p)
    nodes = np.array([-1.0, 0.0, 1.0, 2.0])[:, None]
    for power in range(4):
        np.testing.assert_allclose((weights * nodes**power).sum(axis=0), p**power, atol=1e-12)


def test_the_dp_beats_every_rule_on_its_own_model() -> None:
    scenario = _small()
    build = build_market(scenario)
    dp = run_policy(
        scenario, build, PolicySpec("dp", PolicyFamily.DP_OPTIMAL, None, (), GRID), None
    )
    rules = [
        run_policy(scenario, build, PolicySpec("t", PolicyFamily.FIXED_THRESHOLD, v, ()), v)
        for v in (3.0, 5.0, 7.5, 10.0)
    ] + [
        run_policy(scenario, build, PolicySpec("c", PolicyFamily.TIME_BASED, v, ()), v)
        for v in (2.0, 6.0, 12.0)
    ]
    best_rule = min(r.measures.total_cost for r in rules)
    assert dp.measures.total_cost < best_rule
    band = run_policy(
        scenario, build, PolicySpec("b", PolicyFamily.GAS_ADJUSTED_BAND, 2e-4, ()), 2e-4
    )
    # the band is the DP's continuous-time approximation: close to it (hourly decisions
    # overshoot the band, which the DP anticipates)
    assert dp.measures.total_cost < band.measures.total_cost < 1.1 * dp.measures.total_cost


def test_the_dp_holds_wider_when_gas_is_dear() -> None:
    solution = solve_dp(_small(), GRID)
    middle = solution.log_spot.size // 2
    width = solution.hi[10:200, middle] - solution.lo[10:200, middle]  # (steps, gas states)
    assert np.all(np.isfinite(width))
    assert np.mean(width[:, -1]) > np.mean(width[:, 0])  # dearest vs cheapest gas state
    assert np.all(solution.target_hi[10:200, middle] < solution.hi[10:200, middle])


def test_without_costs_the_dp_rebalances_every_step() -> None:
    base = load_scenario("zero_cost_textbook")
    scenario = replace(base, n_paths=50, n_steps=20, step_seconds=base.horizon_seconds / 20)
    build = build_market(scenario)
    grid = DpGrid(spot_nodes=15, deviation_nodes=41, deviation_max=20000.0, gas_states=1)
    run = run_policy(
        scenario, build, PolicySpec("dp", PolicyFamily.DP_OPTIMAL, None, (), grid), None
    )
    assert run.measures.rebalances_mean == pytest.approx(20.0, abs=0.5)


def _parse(text: str) -> Scenario:
    return parse_scenario(tomllib.loads(text), "t.toml", DEFAULT_DATA_DIR)


def test_the_grid_comes_from_the_scenario_file() -> None:
    path = load_scenario("eth_30d_short_call")
    (dp,) = [p for p in path.policies if p.family is PolicyFamily.DP_OPTIMAL]
    assert dp.grid == DpGrid(spot_nodes=41, deviation_nodes=61, deviation_max=25.0, gas_states=7)
    text = (
        find_scenario("eth_30d_short_call").read_text()
        + '\n[[policies]]\nname = "dp2"\nkind = "dp_optimal"\nspot_nodez = 3\n'
    )
    with pytest.raises(ConfigError, match="spot_nodez"):
        _parse(text)


def test_real_windows_have_no_dp() -> None:
    history = replace(_small(), paths=HistoryModel(Path("x.csv"), 86400.0))
    with pytest.raises(ConfigError, match="simulated price model"):
        solve_dp(history, GRID)
