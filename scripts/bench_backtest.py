"""Time the backtester: every policy of a 10,000 paths x 1,000 steps study, DP excluded.

Prints the seconds spent building the market (price and gas paths, the book's greeks) and
simulating each headline policy of ``eth_30d_short_call`` over it (``dp_optimal`` is a
reference solved offline and not timed here), then the policies' total. Not a test: numbers
vary with the machine and its load.

    .venv/bin/python scripts/bench_backtest.py [--paths N] [--steps N] [--scenario NAME]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

from keeper.backtest.scenario import PolicyFamily, load_scenario
from keeper.backtest.study import build_market, run_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=1_000)
    parser.add_argument("--scenario", default="eth_30d_short_call")
    args = parser.parse_args()
    base = load_scenario(args.scenario)
    scenario = replace(
        base, n_paths=args.paths, n_steps=args.steps, step_seconds=base.horizon_seconds / args.steps
    )
    specs = [p for p in scenario.policies if p.family is not PolicyFamily.DP_OPTIMAL]

    start = time.perf_counter()
    build = build_market(scenario)
    built = time.perf_counter()
    print(
        f"{args.paths} paths x {args.steps} steps, {args.scenario}, load {os.getloadavg()[0]:.1f}"
    )
    print(f"  market (paths, gas, greeks): {built - start:6.2f} s")
    total = 0.0
    for spec in specs:
        param = spec.param if spec.param is not None else (spec.sweep[0] if spec.sweep else None)
        began = time.perf_counter()
        run = run_policy(scenario, build, spec, param)
        took = time.perf_counter() - began
        total += took
        m = run.measures
        print(
            f"  {spec.name:18} {took:6.2f} s  ({m.rebalances_mean:7.1f} rebalances/path, "
            f"total cost {m.total_cost:,.0f})"
        )
    print(f"  all {len(specs)} policies:           {total:6.2f} s")
    print(f"  with the market:             {total + built - start:6.2f} s")


if __name__ == "__main__":
    main()
