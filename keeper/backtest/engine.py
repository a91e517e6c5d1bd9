"""The hedging simulation: loop over time steps, vectorised over paths.

Accounting (Hull, *Options, Futures and Other Derivatives*, "cost of writing and hedging"
tables in ch. 19): the writer funds every hedge trade at the risk-free rate and owes the
options' payoff at expiry, so the hedging cost of one path is the present value at the start
of all cash flows of the hedge portfolio,

    C = sum_i e^{-r t_i} (q_i S_i + gas_i + fee_i + slip_i) + e^{-r T} (payoff - h_T S_T)

where ``q_i`` is the underlying bought at step ``i`` (negative when sold) and ``h_T`` the hedge
held at expiry, valued at ``S_T`` with no unwinding cost (the vault keeps it). With no costs and
fine hedging, C tends to the Black-Scholes price on every path.

Decisions are taken at steps 0..n-1 (the expiry step only settles). Every hedging policy puts
the hedge on at step 0, as a vault does when it writes the book; after that the policy decides.
A rebalance leaves the deviation the policy asks for (``BandResult.trade_to``: the band's inner
target ``+-h``, 0 for the others), exactly as the live keeper's decision does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keeper.backtest.costs import CostModel
from keeper.backtest.policies import DpPolicy, HedgePolicy, LivePolicy
from keeper.core.bands import BandInputs, subset_inputs

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Market:
    """Everything that does not depend on the policy, shared by all policies (the same
    paths for every policy: common random numbers)."""

    spot: FloatArray  # (n_steps + 1, n_paths)
    option_delta: FloatArray  # (n_steps, n_paths)
    option_gamma: FloatArray  # (n_steps, n_paths)
    gas_quote: FloatArray  # (n_steps, n_paths): K, one rebalance's gas in quote units
    base_fee_gwei: FloatArray  # (n_steps + 1, n_paths)
    payoff: FloatArray  # (n_paths,): what the writer owes at expiry
    t_years_left: FloatArray  # (n_steps,)
    discount: FloatArray  # (n_steps + 1,): e^{-r t_i}
    step_seconds: float
    vol: float
    target_delta: float
    costs: CostModel
    gas_usual_level_gwei: float = np.nan  # the base fee gas reverts to (gas timing)
    gas_half_life_years: float = np.nan
    greeks_vol: FloatArray | None = None  # (n_steps, n_paths) realised vol, when the greeks use it

    @property
    def n_steps(self) -> int:
        return int(self.option_delta.shape[0])

    @property
    def n_paths(self) -> int:
        return int(self.option_delta.shape[1])


@dataclass(frozen=True)
class PathTrace:
    """One path, step by step, for the example plot."""

    path: int
    spot: FloatArray  # (n_steps + 1,)
    deviation: FloatArray  # (n_steps,): before the decision
    hedge: FloatArray  # (n_steps,): after the decision
    rebalanced: BoolArray  # (n_steps,)


@dataclass(frozen=True)
class PathOutcomes:
    """Per-path results of one policy; money figures are present values at the start."""

    hedge_cost: FloatArray
    gas: FloatArray
    fees: FloatArray
    slippage: FloatArray
    rebalances: IntArray
    deviation_sq_mean: FloatArray  # mean over steps 1..n-1 of the pre-decision deviation^2
    trace: PathTrace


@dataclass
class _Book:
    """Running per-path state of the hedge portfolio."""

    hedge: FloatArray
    cash: FloatArray
    gas: FloatArray
    fees: FloatArray
    slippage: FloatArray
    rebalances: IntArray
    last_rebalance: IntArray
    deviation_sq: FloatArray

    @classmethod
    def empty(cls, n_paths: int) -> _Book:
        def zeros() -> FloatArray:
            return np.zeros(n_paths)

        return cls(
            zeros(),
            zeros(),
            zeros(),
            zeros(),
            zeros(),
            np.zeros(n_paths, dtype=np.int64),
            np.zeros(n_paths, dtype=np.int64),
            zeros(),
        )


def simulate(policy: HedgePolicy, market: Market, trace_path: int = 0) -> PathOutcomes:
    """Run ``policy`` over every path of ``market``; see the module docstring."""
    state = _Book.empty(market.n_paths)
    trace_path = min(trace_path, market.n_paths - 1)
    trace_dev = np.zeros(market.n_steps)
    trace_hedge = np.zeros(market.n_steps)
    trace_act = np.zeros(market.n_steps, dtype=np.bool_)
    for step in range(market.n_steps):
        deviation = market.option_delta[step] + state.hedge - market.target_delta
        if step > 0:
            state.deviation_sq += deviation * deviation
        act, leave = _decide(policy, market, state, step, deviation)
        _trade(market, state, step, act, deviation - leave)
        trace_dev[step] = deviation[trace_path]
        trace_hedge[step] = state.hedge[trace_path]
        trace_act[step] = act[trace_path]
    final = market.n_steps
    state.cash += market.discount[final] * (market.payoff - state.hedge * market.spot[final])
    inner_steps = max(market.n_steps - 1, 1)
    trace = PathTrace(
        trace_path, market.spot[:, trace_path].copy(), trace_dev, trace_hedge, trace_act
    )
    return PathOutcomes(
        hedge_cost=state.cash,
        gas=state.gas,
        fees=state.fees,
        slippage=state.slippage,
        rebalances=state.rebalances,
        deviation_sq_mean=state.deviation_sq / inner_steps,
        trace=trace,
    )


def _decide(
    policy: HedgePolicy, market: Market, state: _Book, step: int, deviation: FloatArray
) -> tuple[BoolArray, FloatArray]:
    """(act, the deviation a trade leaves) per path."""
    n_paths = market.n_paths
    zero = np.zeros(n_paths)
    if isinstance(policy, DpPolicy):
        spot, fee = market.spot[step], market.base_fee_gwei[step]
        return policy.solution.decide(step, spot, deviation, np.asarray(fee))
    if not isinstance(policy, LivePolicy):
        return np.full(n_paths, policy.hedges), zero
    if step == 0:
        return np.ones(n_paths, dtype=np.bool_), zero
    inputs = BandInputs(
        deviation=deviation,
        gamma=market.option_gamma[step],
        spot=market.spot[step],
        vol=market.vol if market.greeks_vol is None else market.greeks_vol[step],
        t_years=market.t_years_left[step],
        risk_aversion=policy.band_risk_aversion,
        fixed_cost=market.gas_quote[step],
        proportional_cost=market.costs.band_lambda,
        seconds_since_rebalance=(step - state.last_rebalance) * market.step_seconds,
        impact_per_unit=market.costs.band_impact,
        **_gas_timing(policy, market, step),
    )
    band = policy.band
    # Only deviations beyond the policy's cheap lower bound can act: evaluate just those (most
    # paths sit well inside the band at any step). The band's informative spot_move = H / |gamma|
    # overflows to inf for a far out-of-the-money book; inf is its documented value there.
    bound = np.minimum(band.lower_bound(inputs), np.asarray(band.hard_limit, dtype=np.float64))
    idx = np.flatnonzero(np.abs(deviation) > bound)
    act, leave = np.zeros(n_paths, dtype=np.bool_), zero
    if idx.size:
        with np.errstate(over="ignore"):
            result = band.evaluate(subset_inputs(inputs, idx))
        act[idx] = result.act | result.urgent
        leave[idx] = result.trade_to
    return act, leave


def _gas_timing(policy: LivePolicy, market: Market, step: int) -> dict[str, FloatArray]:
    """The gas-timing inputs when the setting uses them (``BandInputs`` defaults: off)."""
    if not policy.gas_timing:
        return {}
    usual = market.costs.gas_quote(market.gas_usual_level_gwei, market.spot[step])
    return {
        "reference_fixed_cost": usual,
        "gas_half_life_years": np.asarray(market.gas_half_life_years),
    }


def _trade(market: Market, state: _Book, step: int, act: BoolArray, excess: FloatArray) -> None:
    """Trade away ``excess`` (deviation minus what the trade leaves) where ``act``; only the
    acting paths are touched (usually a few percent of them)."""
    found = np.flatnonzero(act)
    if found.size == 0:
        return
    idx: slice | IntArray = slice(None) if found.size == act.size else found  # all: no gather
    spot = market.spot[step, idx]
    quantity = -excess[idx]
    costs = market.costs.trade(quantity, spot)
    gas = market.gas_quote[step, idx]
    discount = market.discount[step]
    state.cash[idx] += discount * (quantity * spot + gas + costs.fees + costs.slippage)
    state.gas[idx] += discount * gas
    state.fees[idx] += discount * costs.fees
    state.slippage[idx] += discount * costs.slippage
    state.hedge[idx] += quantity
    state.rebalances[idx] += 1
    state.last_rebalance[idx] = step
