"""``keeper backtest SCENARIO``: run a study and print a table, JSON, or a plot.

Wiring into the main CLI is one line, ``keeper.backtest.cli.add_parser(subparsers)``; the
sub-parser's ``func`` default is :func:`run`. ``python -m keeper.backtest`` runs it alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from keeper.backtest.report import format_table, to_json
from keeper.backtest.scenario import load_scenario, shipped_scenarios
from keeper.backtest.study import run_study, with_overrides
from keeper.errors import KeeperError

HELP = "simulate writing and delta-hedging a vault's book under each rebalancing policy"


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "scenario",
        nargs="?",
        help=f"a scenario file, or a shipped one: {', '.join(shipped_scenarios())}",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON only")
    parser.add_argument("--json-out", type=Path, metavar="FILE", help="also write JSON to FILE")
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="draw the frontier and an example path"
    )
    parser.add_argument(
        "--paths", type=int, metavar="N", help="override n_paths (simulated models)"
    )
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--no-sweep", action="store_true", help="run only the headline settings")
    parser.add_argument(
        "--data-dir", type=Path, help="the real price data folder (default ../shared/data)"
    )
    parser.add_argument("--list", action="store_true", help="list the shipped scenarios")
    parser.set_defaults(func=run)
    return parser


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``backtest`` to a main parser's sub-commands."""
    return configure(subparsers.add_parser("backtest", help=HELP, description=HELP))


def run(args: argparse.Namespace) -> int:
    """Run the study the arguments describe; 0 on success, 2 on a configuration error."""
    if args.list:
        print("\n".join(shipped_scenarios()))
        return 0
    if not args.scenario:
        print("error: a scenario is required (see --list)", file=sys.stderr)
        return 2
    try:
        scenario = with_overrides(
            load_scenario(args.scenario, args.data_dir), n_paths=args.paths, seed=args.seed
        )
        result = run_study(scenario, sweep=not args.no_sweep)
        if args.plot is not None:
            from keeper.backtest.plot import plot_study

            plot_study(result, args.plot)
    except KeeperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    document = to_json(result)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(document, indent=2) + "\n")
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(format_table(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = configure(argparse.ArgumentParser(prog="python -m keeper.backtest", description=HELP))
    return run(parser.parse_args(argv))
