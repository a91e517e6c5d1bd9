"""A whole study: build the market once, run every policy setting over it, summarise."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from keeper.backtest.book import book_greeks, book_value, payoff_owed
from keeper.backtest.costs import CostModel
from keeper.backtest.dp import DpSolution, solve
from keeper.backtest.durations import SECONDS_PER_YEAR
from keeper.backtest.engine import Market, PathTrace, simulate
from keeper.backtest.gas import GasModel, StochasticGas, gas_paths
from keeper.backtest.measures import PolicyMeasures, measure
from keeper.backtest.paths import (
    GbmModel,
    MertonModel,
    PricePaths,
    gbm_paths,
    history_paths,
    merton_paths,
)
from keeper.backtest.policies import DpPolicy, HedgePolicy, ReferencePolicy, build_policy
from keeper.backtest.prices import LoadReport, load_price_csv
from keeper.backtest.scenario import DpGrid, HistoryModel, PolicyFamily, PolicySpec, Scenario
from keeper.core.greeks import ewma_vol_path
from keeper.errors import ConfigError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MarketBuild:
    market: Market
    option_price: float  # the book's Black-Scholes value to the writer at the start
    data_report: LoadReport | None
    window_starts: IntArray | None  # unix seconds of each real window's start


@dataclass(frozen=True)
class SettingRun:
    """One setting of one policy: its measures and what comparisons need per path."""

    measures: PolicyMeasures
    hedge_cost: FloatArray  # per path, present value
    costs: FloatArray  # per path: gas + fees + slippage, present value
    trace: PathTrace  # the example path


@dataclass(frozen=True)
class PolicyResult:
    spec: PolicySpec
    headline: SettingRun
    selection: str  # "configured", "best of sweep" or "reference"
    sweep: tuple[SettingRun, ...]  # in the order of the scenario's sweep list

    @property
    def best(self) -> SettingRun:
        """The lowest total cost among the headline and the sweep."""
        return min((self.headline, *self.sweep), key=lambda run: _total(run.measures))


@dataclass(frozen=True)
class StudyResult:
    scenario: Scenario
    option_price: float
    n_paths: int
    n_steps: int
    data_report: LoadReport | None
    window_starts: IntArray | None
    overlap_lags: int  # later windows each real window overlaps (0: independent paths)
    policies: tuple[PolicyResult, ...]
    baseline: FloatArray  # per path: hedging cost of the zero-cost every-step hedge


def with_overrides(
    scenario: Scenario,
    *,
    n_paths: int | None = None,
    seed: int | None = None,
    realized_vol_half_life: float | None = None,
) -> Scenario:
    """The scenario with a different path count, seed or greeks vol (quick runs and the CLI)."""
    if realized_vol_half_life is not None:
        book = replace(scenario.book, realized_vol_half_life=realized_vol_half_life)
        scenario = replace(scenario, book=book)
    if n_paths is not None:
        scenario = replace(scenario, n_paths=n_paths)
    if seed is not None:
        scenario = replace(scenario, seed=seed)
    return scenario


def price_paths(
    scenario: Scenario, rng: np.random.Generator
) -> tuple[PricePaths, LoadReport | None]:
    model = scenario.paths
    args = (scenario.book.spot, scenario.step_seconds, scenario.n_steps)
    if isinstance(model, GbmModel):
        return gbm_paths(model, *args, _count(scenario), rng), None
    if isinstance(model, MertonModel):
        return merton_paths(model, *args, _count(scenario), rng), None
    series = load_price_csv(model.file)
    paths = history_paths(series, *args, model.window_stride_seconds, scenario.n_paths)
    return paths, series.report


def _count(scenario: Scenario) -> int:
    if scenario.n_paths is None:
        raise ValueError("a simulated path model needs n_paths")
    return scenario.n_paths


def build_market(scenario: Scenario) -> MarketBuild:
    """Price and gas paths (independent random streams from the seed) and the book's greeks."""
    price_rng, gas_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(scenario.seed).spawn(2)
    )
    paths, report = price_paths(scenario, price_rng)
    book = scenario.book
    times = np.arange(scenario.n_steps + 1) * scenario.step_seconds
    t_years_left = (scenario.horizon_seconds - times[:-1]) / SECONDS_PER_YEAR
    vol = None
    if book.realized_vol_half_life > 0.0:
        vol = ewma_vol_path(
            paths.spot[:-1], scenario.step_seconds, book.realized_vol_half_life, book.vol
        )
    greeks = book_greeks(book, paths.spot[:-1], t_years_left, vol)
    base_fee = gas_paths(
        scenario.gas, scenario.step_seconds, scenario.n_steps, paths.n_paths, gas_rng
    )
    costs = CostModel(scenario.costs)
    market = Market(
        spot=paths.spot,
        option_delta=greeks.delta,
        option_gamma=greeks.gamma,
        gas_quote=costs.gas_quote(base_fee[:-1], paths.spot[:-1]),
        base_fee_gwei=base_fee,
        payoff=payoff_owed(book, paths.spot[-1]),
        t_years_left=t_years_left,
        discount=np.exp(-book.rate * times / SECONDS_PER_YEAR),
        step_seconds=scenario.step_seconds,
        vol=book.vol,
        target_delta=book.target_delta,
        costs=costs,
        greeks_vol=vol,
        **_gas_reversion(scenario.gas),
    )
    price = -book_value(book, book.spot, scenario.horizon_seconds / SECONDS_PER_YEAR)
    return MarketBuild(market, price, report, paths.window_starts)


def solve_dp(scenario: Scenario, grid: DpGrid) -> DpSolution:
    """The dynamic program for a simulated scenario (GBM, or Merton's diffusion part)."""
    model = scenario.paths
    if isinstance(model, HistoryModel):
        raise ConfigError(
            f"{scenario.name}: dp_optimal needs a simulated price model (gbm or merton); "
            "real windows have no transition law to optimise against"
        )
    return solve(
        scenario.book,
        model.vol,
        model.drift,
        scenario.step_seconds,
        scenario.n_steps,
        CostModel(scenario.costs),
        scenario.gas,
        scenario.risk_aversion,
        grid,
        scenario.seed,
        scenario.vault.hard_limit,
    )


def _gas_reversion(model: GasModel) -> dict[str, float]:
    """The usual base fee and its half-life, for the band's gas timing (stochastic gas only)."""
    if isinstance(model, StochasticGas):
        return {
            "gas_usual_level_gwei": model.base_fee_gwei,
            "gas_half_life_years": model.half_life_seconds / SECONDS_PER_YEAR,
        }
    return {}


def run_policy(
    scenario: Scenario, build: MarketBuild, spec: PolicySpec, param: float | None
) -> SettingRun:
    """One setting of one policy over the whole market."""
    policy: HedgePolicy
    if spec.family is PolicyFamily.DP_OPTIMAL:
        policy = DpPolicy(spec.name, spec.family, solve_dp(scenario, spec.grid or DpGrid()))
    else:
        policy = build_policy(
            spec.name,
            spec.family,
            param,
            scenario.vault,
            scenario.step_seconds,
            scenario.risk_aversion,
            spec.gas_timing,
        )
    outcomes = simulate(policy, build.market, scenario.example_path)
    measures = measure(
        outcomes,
        policy=spec.name,
        family=spec.family.value,
        param=param,
        option_price=build.option_price,
        risk_aversion=scenario.risk_aversion,
    )
    costs = outcomes.gas + outcomes.fees + outcomes.slippage
    return SettingRun(measures, outcomes.hedge_cost, costs, outcomes.trace)


def run_spec(
    scenario: Scenario, build: MarketBuild, spec: PolicySpec, sweep: bool = True
) -> PolicyResult:
    """The headline setting and (when ``sweep``) every sweep point of one policy."""
    runs: dict[float | None, SettingRun] = {}
    points = spec.sweep if sweep or spec.param is None else ()
    for value in points:
        runs[value] = run_policy(scenario, build, spec, value)
    if not spec.sweep and spec.param is None:
        headline_key: float | None = None
        selection = "reference"
        runs[None] = run_policy(scenario, build, spec, None)
    elif spec.param is None:
        headline_key = min(points, key=lambda value: _total(runs[value].measures))
        selection = "best of sweep"
    else:
        headline_key = spec.param
        selection = "configured"
        if headline_key not in runs:
            runs[headline_key] = run_policy(scenario, build, spec, headline_key)
    sweep_runs = tuple(runs[value] for value in points)
    return PolicyResult(spec, runs[headline_key], selection, sweep_runs)


def _total(measures: PolicyMeasures) -> float:
    return measures.total_cost if math.isfinite(measures.total_cost) else math.inf


def overlap_lags(horizon_seconds: float, window_starts: IntArray | None) -> int:
    """The Newey-West lag: twice the number of later windows a real window overlaps
    (``keeper.backtest.compare``); 0 when simulated."""
    if window_starts is None or window_starts.size < 2:
        return 0
    spacing = float(np.median(np.diff(np.sort(window_starts))))
    return 2 * max(0, math.ceil(horizon_seconds / spacing) - 1) if spacing > 0 else 0


def zero_cost_baseline(build: MarketBuild) -> FloatArray:
    """Per path, the hedging cost of rebalancing to target at every step with no costs: the
    every-step hedge's cost minus what it paid in gas, fees and slippage."""
    every = ReferencePolicy("baseline", PolicyFamily.EVERY_STEP, hedges=True)
    outcomes = simulate(every, build.market)
    result: FloatArray = outcomes.hedge_cost - (outcomes.gas + outcomes.fees + outcomes.slippage)
    return result


def run_study(scenario: Scenario, *, sweep: bool = True) -> StudyResult:
    """Build the market once and run every policy of ``scenario`` over it."""
    build = build_market(scenario)
    results = tuple(run_spec(scenario, build, spec, sweep) for spec in scenario.policies)
    return StudyResult(
        scenario=scenario,
        option_price=build.option_price,
        n_paths=build.market.n_paths,
        n_steps=build.market.n_steps,
        data_report=build.data_report,
        window_starts=build.window_starts,
        overlap_lags=overlap_lags(scenario.horizon_seconds, build.window_starts),
        policies=results,
        baseline=zero_cost_baseline(build),
    )
