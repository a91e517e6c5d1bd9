"""Time the backtester: 10,000 paths x 1,000 steps, one policy (the gas-adjusted band).

Prints the seconds spent building the market (price and gas paths, the book's greeks) and
simulating one policy over it. Not a test: numbers vary with the machine.

    .venv/bin/python scripts/bench_backtest.py [--paths N] [--steps N] [--policy KIND]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from keeper.backtest.scenario import PolicyFamily, PolicySpec, load_scenario
from keeper.backtest.study import build_market, run_policy

PARAMS = {
    PolicyFamily.GAS_ADJUSTED_BAND: 2e-4,
    PolicyFamily.FIXED_THRESHOLD: 5.0,
    PolicyFamily.TIME_BASED: 36.0,
    PolicyFamily.EVERY_STEP: None,
    PolicyFamily.NO_HEDGE: None,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=1_000)
    parser.add_argument(
        "--policy",
        default=PolicyFamily.GAS_ADJUSTED_BAND.value,
        choices=[family.value for family in PolicyFamily],
    )
    args = parser.parse_args()
    base = load_scenario("eth_30d_short_call")
    scenario = replace(
        base, n_paths=args.paths, n_steps=args.steps, step_seconds=base.horizon_seconds / args.steps
    )
    family = PolicyFamily(args.policy)
    spec = PolicySpec(family.value, family, PARAMS[family], ())

    start = time.perf_counter()
    build = build_market(scenario)
    built = time.perf_counter()
    run = run_policy(scenario, build, spec, spec.param)
    done = time.perf_counter()

    m = run.measures
    print(f"{args.paths} paths x {args.steps} steps, policy {family.value}")
    print(f"  market (paths, gas, greeks): {built - start:.2f} s")
    print(f"  one policy simulation:       {done - built:.2f} s")
    print(f"  total:                       {done - start:.2f} s")
    print(f"  ({m.rebalances_mean:.1f} rebalances/path, std/price {m.hedge_cost_std_ratio:.4f})")


if __name__ == "__main__":
    main()
