"""The optimal hedging policy by dynamic programming: the yardstick for every rule.

A finite-horizon Markov decision problem (Bertsekas, *Dynamic Programming and Optimal Control*,
vol. 1, ch. 1; impulse control of a hedge with fixed costs: Davis, Panas & Zariphopoulou 1993)
on a grid of (time step, spot, deviation, gas state):

* Spot: log-spot nodes ``ln S0 + z_i``, uniform over ``+-spot_width`` standard deviations of
  the horizon; one step moves ``ln S`` by ``(mu - sigma^2/2) dt + sigma sqrt(dt) e`` with ``e``
  from the 3-point Gauss-Hermite rule (``0`` with weight 2/3, ``+-sqrt 3`` with 1/6 each: exact
  for polynomials up to degree 5); values between nodes are interpolated by cubics
  (:func:`_expect`: a step is a small fraction of a node).
* Deviation: after a trade the deviation is ``y``; at the next step it is
  ``y + Delta_{t+1}(S') - Delta_t(S)`` (the book's Black-Scholes delta, exact), interpolated
  linearly on a uniform grid over ``+-deviation_max``.
* Gas: a Markov chain on ``gas_states`` quantile bins of the scenario's base-fee process,
  transition matrix counted on simulated fee paths (a discrete approximation of the
  mean-reverting log process with spikes, whose state is the log fee itself).
* The hard limit: beyond it (and at the grid's edges) a trade is forced, as for every live
  policy (``deviation_max`` should be at least the vault's hard limit).
* Stage cost: a trade from ``x`` to ``y`` costs ``K(S, g) + b |x - y| + c (x - y)^2`` (gas, fee,
  impact, as the backtest charges); holding ``y`` for a step costs
  ``risk_aversion sigma^2 S^2 y^2 dt``, the step's contribution to the variance of the hedging
  P&L (the integral of ``y dS`` is a martingale, so its variance is the expected integral of
  ``y^2 sigma^2 S^2 dt``); the terminal value is 0 (the hedge is not unwound).

The Bellman recursion ``V_t(x) = min(W_t(x), min_y K + b|x-y| + c(x-y)^2 + W_t(y))`` with
``W_t(y) = risk(y) + E[V_{t+1}(x')]`` is solved backwards, vectorised over the whole
(deviation, spot, gas) grid of a step. The policy kept for simulation is, per (step, spot node,
gas state), the hold interval ``[lo, hi]`` of the deviation and the targets a trade below or
above it goes to; at a path's spot both are interpolated between the two nearest spot nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keeper.backtest.book import book_greeks
from keeper.backtest.costs import CostModel
from keeper.backtest.durations import SECONDS_PER_YEAR
from keeper.backtest.gas import ConstantGas, GasModel, gas_paths
from keeper.backtest.scenario import Book, DpGrid

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_GH_NODES = np.array([-math.sqrt(3.0), 0.0, math.sqrt(3.0)])
_GH_WEIGHTS = np.array([1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0])
_GAS_SAMPLE_PATHS = 400
_NO_EDGE = 1e12  # underlying units: no deviation reaches it


@dataclass(frozen=True)
class GasChain:
    """A Markov chain for the base fee: state levels (gwei), bin edges (log gwei) and the
    one-step transition matrix ``P[g, g']``."""

    levels: FloatArray  # (n,) mean base fee of each state, gwei
    log_edges: FloatArray  # (n - 1,) inner bin edges, log gwei
    transition: FloatArray  # (n, n), rows sum to 1

    def state_of(self, base_fee_gwei: npt.ArrayLike) -> IntArray:
        """The state of each base fee (the bin its log falls in)."""
        if self.log_edges.size == 0:
            return np.zeros(np.shape(base_fee_gwei), dtype=np.int64)
        fee = np.maximum(np.asarray(base_fee_gwei, dtype=np.float64), 1e-300)
        index: IntArray = np.searchsorted(self.log_edges, np.log(fee))
        return index


def fit_gas_chain(
    model: GasModel, n_states: int, step_seconds: float, n_steps: int, seed: int
) -> GasChain:
    """Quantile bins of simulated log fees and the counted transitions between them."""
    if isinstance(model, ConstantGas) or n_states == 1:
        fee = gas_paths(model, step_seconds, n_steps, 1, np.random.default_rng(seed))
        return GasChain(np.array([float(np.mean(fee))]), np.array([]), np.ones((1, 1)))
    rng = np.random.default_rng(seed)
    fees = gas_paths(model, step_seconds, n_steps, _GAS_SAMPLE_PATHS, rng)
    logs = np.log(fees)
    edges = np.quantile(logs, np.linspace(0, 1, n_states + 1)[1:-1])
    states = np.searchsorted(edges, logs)
    levels = np.array([fees[states == g].mean() for g in range(n_states)])
    counts = np.zeros((n_states, n_states))
    np.add.at(counts, (states[:-1].ravel(), states[1:].ravel()), 1.0)
    counts += 1e-9  # a state never left in the sample stays put
    return GasChain(levels, edges, counts / counts.sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class DpSolution:
    """The solved policy: per (step, spot node, gas state) the hold interval and targets."""

    log_spot: FloatArray  # (ns,) grid of ln S
    lo: FloatArray  # (n_steps, ns, ng): hold while lo <= deviation <= hi
    hi: FloatArray
    target_lo: FloatArray  # where a trade from below lo goes
    target_hi: FloatArray  # where a trade from above hi goes
    chain: GasChain
    value0: float  # the DP's own expected objective from the start (spot S0, median gas)

    def decide(
        self, step: int, spot: FloatArray, deviation: FloatArray, base_fee_gwei: FloatArray
    ) -> tuple[BoolArray, FloatArray]:
        """(act, the deviation the trade leaves) for each path at ``step``."""
        g = self.chain.state_of(base_fee_gwei)
        pos = np.clip(
            (np.log(spot) - self.log_spot[0]) / (self.log_spot[1] - self.log_spot[0]),
            0.0,
            self.log_spot.size - 1.0,
        )
        i = np.minimum(pos.astype(np.int64), self.log_spot.size - 2)
        f = pos - i

        def at(table: FloatArray) -> FloatArray:
            rows = table[step]
            result: FloatArray = rows[i, g] * (1.0 - f) + rows[i + 1, g] * f
            return result

        below, above = deviation < at(self.lo), deviation > at(self.hi)
        act = below | above
        leave = np.where(below, at(self.target_lo), np.where(above, at(self.target_hi), 0.0))
        return act, leave


def solve(
    book: Book,
    model_vol: float,
    drift: float,
    step_seconds: float,
    n_steps: int,
    costs: CostModel,
    gas: GasModel,
    risk_aversion: float,
    grid: DpGrid,
    seed: int,
    hard_limit: float = math.inf,
) -> DpSolution:
    """Backward induction over the whole grid; see the module docstring."""
    dt = step_seconds / SECONDS_PER_YEAR
    horizon = n_steps * dt
    half = grid.spot_width * model_vol * math.sqrt(horizon)
    log_spot = math.log(book.spot) + np.linspace(-half, half, grid.spot_nodes)
    spot = np.exp(log_spot)
    x = np.linspace(-grid.deviation_max, grid.deviation_max, grid.deviation_nodes)
    hx = x[1] - x[0]
    chain = fit_gas_chain(gas, grid.gas_states, step_seconds, n_steps, seed)
    ns, nx, ng = spot.size, x.size, chain.levels.size

    t_left = horizon - np.arange(n_steps + 1) * dt
    moves = (drift - 0.5 * model_vol**2) * dt + model_vol * math.sqrt(dt) * _GH_NODES
    spot_next = spot[:, None] * np.exp(moves)[None, :]  # (ns, 3)
    delta_now = _deltas(book, np.broadcast_to(spot, (n_steps, ns)), t_left[:-1])  # (T, ns)
    delta_next = _deltas(
        book, np.broadcast_to(spot_next.ravel(), (n_steps, ns * 3)), np.maximum(t_left[1:], 0.0)
    ).reshape(n_steps, ns, 3)
    # next spot as a fractional node index (the same offset from every node: a uniform log grid)
    hs = log_spot[1] - log_spot[0]
    s_pos = np.arange(ns)[:, None] + moves[None, :] / hs  # (ns, 3)
    s_lo = np.floor(s_pos).astype(np.int64)
    s_frac = s_pos - s_lo

    gas_k = np.asarray(costs.gas_quote(chain.levels[None, :], spot[:, None]))  # (ns, ng)
    fee_b = costs.band_lambda * spot  # (ns,)
    impact_c = costs.band_impact * spot
    q = x[:, None] - x[None, :]  # (x, y)
    trade_cost = fee_b[None, None, :] * np.abs(q)[:, :, None] + impact_c * (q * q)[:, :, None]
    risk = risk_aversion * (model_vol * spot[None, :]) ** 2 * (x * x)[:, None] * dt  # (nx, ns)

    # past the hard limit (and at the grid's edges, beyond which values are clamped) the vault
    # rebalances whatever it costs, as under every live policy
    must = (np.abs(x) >= hard_limit) | (np.abs(x) >= x[-1])
    shape = (n_steps, ns, ng)
    lo, hi, target_lo, target_hi = (np.empty(shape) for _ in range(4))
    value = np.zeros((nx, ns, ng))
    for t in range(n_steps - 1, -1, -1):
        mixed = value @ chain.transition.T  # E over the next gas state: (nx, ns, ng)
        shift = (delta_next[t] - delta_now[t][:, None]) / hx  # (ns, 3) in x-grid steps
        cont = _expect(mixed, shift, s_lo, s_frac)  # (nx, ns, ng)
        hold = risk[:, :, None] + cont  # W_t(y)
        options = trade_cost[:, :, :, None] + hold[None, :, :, :]  # (x, y, ns, ng)
        best_y = np.argmin(options, axis=1)  # (x, ns, ng)
        traded = np.take_along_axis(options, best_y[:, None], axis=1)[:, 0] + gas_k[None]
        trade = (traded <= hold) | must[:, None, None] if t > 0 else np.ones_like(hold, dtype=bool)
        value = np.where(trade, traded, hold)
        lo[t], hi[t], target_lo[t], target_hi[t] = _intervals(trade, x, best_y)
    # the forced first trade from the book's own delta (usually beyond the grid), median gas
    start = int(np.argmin(np.abs(log_spot - math.log(book.spot))))
    x0 = float(delta_now[0, start])
    g0 = ng // 2
    q0 = x0 - x
    first = fee_b[start] * np.abs(q0) + impact_c[start] * q0 * q0 + hold[:, start, g0]
    value0 = float(gas_k[start, g0] + first.min())
    return DpSolution(log_spot, lo, hi, target_lo, target_hi, chain, value0)


def _deltas(book: Book, spot: FloatArray, t_years: FloatArray) -> FloatArray:
    """The book's delta minus its target at every (step, node)."""
    delta: FloatArray = book_greeks(book, np.ascontiguousarray(spot), t_years).delta
    return delta - book.target_delta


def _lagrange4(p: FloatArray) -> FloatArray:
    """Cubic Lagrange weights of the nodes -1, 0, 1, 2 at fraction ``p`` in [0, 1)."""
    weights: FloatArray = np.stack(
        [
            -p * (p - 1) * (p - 2) / 6,
            (p + 1) * (p - 1) * (p - 2) / 2,
            -(p + 1) * p * (p - 2) / 2,
            (p + 1) * p * (p - 1) / 6,
        ]
    )
    return weights


def _expect(
    value: FloatArray, shift: FloatArray, s_base: IntArray, s_frac: FloatArray
) -> FloatArray:
    """``sum_k w_k V(y + shift[s, k], s'_k)``: linear in the deviation, CUBIC in the spot.

    A step moves ln S by far less than a node; linear interpolation would then add a variance
    of ``|move| x node`` instead of ``move^2`` (numerical diffusion, an order of magnitude here),
    while the 4-point cubic reproduces ``V + V' m + V'' m^2 / 2`` (Lagrange interpolation error
    ``O(h^4)``, e.g. Press et al., *Numerical Recipes*, 3rd ed., 3.2).
    """
    nx, ns = value.shape[0], value.shape[1]
    out = np.zeros_like(value)
    base = np.arange(nx, dtype=np.float64)[:, None]
    cols = np.arange(ns)[None, :]
    for k, weight in enumerate(_GH_WEIGHTS):
        pos = np.clip(base + shift[None, :, k], 0.0, nx - 1.0)  # (nx, ns)
        xi = np.minimum(pos.astype(np.int64), nx - 2)
        xf = (pos - xi)[:, :, None]
        lagrange = _lagrange4(s_frac[:, k])  # (4, ns)
        for offset in range(4):
            node = np.clip(s_base[:, k] + offset - 1, 0, ns - 1)
            v = value[:, node, :]  # (nx, ns, ng): that next-spot node of each current node
            interp = v[xi, cols] * (1.0 - xf) + v[xi + 1, cols] * xf
            out += weight * lagrange[offset][None, :, None] * interp
    return out


def _intervals(
    trade: BoolArray, x: FloatArray, best_y: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per (spot, gas): the hold interval [lo, hi] (the grid points where holding is optimal,
    widened half a grid step each side) and the targets of trades from below and above it."""
    nx = x.size
    hold = ~trade
    any_hold = hold.any(axis=0)
    first = np.argmax(hold, axis=0)
    last = nx - 1 - np.argmax(hold[::-1], axis=0)
    step = x[1] - x[0]
    lo = np.where(any_hold, x[first] - step / 2, np.inf)
    hi = np.where(any_hold, x[last] + step / 2, -np.inf)
    lo = np.where(any_hold & (first == 0), -np.inf, lo)
    hi = np.where(any_hold & (last == nx - 1), np.inf, hi)
    below = np.maximum(first - 1, 0)
    above = np.minimum(last + 1, nx - 1)
    grid_y = x[best_y]  # (nx, ns, ng)
    target_lo = np.take_along_axis(grid_y, below[None], axis=0)[0]
    target_hi = np.take_along_axis(grid_y, above[None], axis=0)[0]
    # nowhere to hold (e.g. the forced first trade): every deviation trades to where a trade
    # from zero deviation would go
    from_zero = grid_y[int(np.argmin(np.abs(x)))]
    target_lo = np.where(any_hold, target_lo, from_zero)
    target_hi = np.where(any_hold, target_hi, from_zero)
    # "everywhere" / "nowhere" as a finite sentinel, so that interpolating never mixes infinities
    return np.clip(lo, -_NO_EDGE, _NO_EDGE), np.clip(hi, -_NO_EDGE, _NO_EDGE), target_lo, target_hi
