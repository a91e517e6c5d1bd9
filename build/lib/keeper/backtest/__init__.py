"""Backtester: write a vault's option book and delta-hedge it over many price paths under each
rebalancing policy, with the live keeper's own band code (``keeper.core.bands``) and greeks.

Python API::

    from keeper.backtest import load_scenario, run_study, format_table, to_json
    result = run_study(load_scenario("eth_30d_short_call"))
    print(format_table(result))

Command line: ``keeper backtest SCENARIO`` or ``python -m keeper.backtest SCENARIO``
(``--json``, ``--json-out FILE``, ``--plot FILE.png``, ``--paths N``, ``--seed N``,
``--no-sweep``, ``--data-dir DIR``, ``--list``). Scenario files: ``keeper/backtest/scenarios``.
Accounting: ``keeper.backtest.engine``; measures and ``total_cost``: ``keeper.backtest.measures``.
"""

from keeper.backtest.report import format_table, to_json
from keeper.backtest.scenario import Scenario, load_scenario, shipped_scenarios
from keeper.backtest.study import StudyResult, build_market, run_study, with_overrides

__all__ = [
    "Scenario",
    "StudyResult",
    "build_market",
    "format_table",
    "load_scenario",
    "run_study",
    "shipped_scenarios",
    "to_json",
    "with_overrides",
]
