"""A whole study: build the market once, run every policy setting over it, summarise."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from keeper.backtest.book import book_greeks, book_value, payoff_owed
from keeper.backtest.costs import CostModel
from keeper.backtest.durations import SECONDS_PER_YEAR
from keeper.backtest.engine import Market, PathTrace, simulate
from keeper.backtest.gas import gas_paths
from keeper.backtest.measures import PolicyMeasures, measure
from keeper.backtest.paths import (
    GbmModel,
    MertonModel,
    PricePaths,
    gbm_paths,
    history_paths,
    merton_paths,
)
from keeper.backtest.policies import build_policy
from keeper.backtest.prices import LoadReport, load_price_csv
from keeper.backtest.scenario import HistoryModel, PolicySpec, Scenario

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
    bootstrap_block: int  # paths per block when resampling (overlapping real windows)
    policies: tuple[PolicyResult, ...]


def with_overrides(
    scenario: Scenario, *, n_paths: int | None = None, seed: int | None = None
) -> Scenario:
    """The scenario with a different path count or seed (for quick runs and the CLI)."""
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
    greeks = book_greeks(book, paths.spot[:-1], t_years_left)
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
    )
    price = -book_value(book, book.spot, scenario.horizon_seconds / SECONDS_PER_YEAR)
    return MarketBuild(market, price, report, paths.window_starts)


def run_policy(
    scenario: Scenario, build: MarketBuild, spec: PolicySpec, param: float | None
) -> SettingRun:
    """One setting of one policy over the whole market."""
    policy = build_policy(
        spec.name, spec.family, param, scenario.vault, scenario.step_seconds, scenario.risk_aversion
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


def _bootstrap_block(scenario: Scenario) -> int:
    """Real windows overlap ``horizon / stride`` at a time, so they are resampled in blocks."""
    if isinstance(scenario.paths, HistoryModel):
        return max(1, math.ceil(scenario.horizon_seconds / scenario.paths.window_stride_seconds))
    return 1


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
        bootstrap_block=_bootstrap_block(scenario),
        policies=results,
    )
