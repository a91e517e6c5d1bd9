"""The DP optimum's discretization error: solve it on finer and finer grids, same paths.

For each grid (spot nodes, deviation nodes, gas states) prints the DP's own expected objective
at the start (``value0``, the proxy it minimises), the simulated total cost of its policy on the
scenario's paths, its mean costs, and the solve-and-simulate time. Not a test.

    .venv/bin/python scripts/dp_convergence.py [--scenario NAME] [--paths N] [GRID ...]

GRID is ``spot,deviation,gas`` (default: 21,31,7 41,61,7 61,91,7 41,61,3 41,61,15).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from keeper.backtest.engine import simulate
from keeper.backtest.measures import measure
from keeper.backtest.policies import DpPolicy
from keeper.backtest.scenario import DpGrid, PolicyFamily, load_scenario
from keeper.backtest.study import build_market, solve_dp

DEFAULT_GRIDS = ("21,31,7", "41,61,7", "61,91,7", "41,61,3", "41,61,15")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="eth_30d_short_call")
    parser.add_argument("--paths", type=int, default=2000)
    parser.add_argument("--deviation-max", type=float, default=25.0)
    parser.add_argument("grids", nargs="*", default=list(DEFAULT_GRIDS))
    args = parser.parse_args()
    scenario = replace(load_scenario(args.scenario), n_paths=args.paths)
    build = build_market(scenario)
    print(f"{scenario.name}: {args.paths} paths x {scenario.n_steps} steps")
    print(f"{'spot':>5} {'dev':>5} {'gas':>4} {'value0':>9} {'total':>9} {'costs':>9} {'s':>7}")
    for text in args.grids:
        spot, dev, gas = (int(v) for v in text.split(","))
        grid = DpGrid(
            spot_nodes=spot,
            deviation_nodes=dev,
            deviation_max=args.deviation_max,
            gas_states=gas,
        )
        began = time.perf_counter()
        solution = solve_dp(scenario, grid)
        outcomes = simulate(DpPolicy("dp", PolicyFamily.DP_OPTIMAL, solution), build.market)
        took = time.perf_counter() - began
        m = measure(
            outcomes,
            policy="dp",
            family=PolicyFamily.DP_OPTIMAL.value,
            param=None,
            option_price=build.option_price,
            risk_aversion=scenario.risk_aversion,
        )
        print(
            f"{spot:>5} {dev:>5} {gas:>4} {solution.value0:>9,.0f} {m.total_cost:>9,.0f} "
            f"{m.costs_mean:>9,.0f} {took:>7.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
