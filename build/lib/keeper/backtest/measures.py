"""Summary measures of one policy setting across paths.

* ``hedge_cost_mean`` / ``hedge_cost_std``: mean and sample standard deviation (ddof=1) of the
  hedging cost C (``keeper.backtest.engine``), quote units, present value at the start.
* ``hedge_cost_std_ratio`` = ``hedge_cost_std / option_price`` (Hull's hedge performance
  measure), ``option_price`` being the book's Black-Scholes value to the writer at the start.
* ``rebalances_mean``, ``gas_paid_mean``, ``fees_paid_mean``, ``slippage_paid_mean``: means per
  path (money as present values).
* ``tracking_error``: RMS over paths and decision steps 1..n-1 of the deviation of the net
  delta from target just before each decision, underlying units.
* ``total_cost`` = ``costs_mean + risk_aversion * hedge_cost_std^2`` with
  ``costs_mean = gas + fees + slippage`` (means) and ``risk_aversion`` the scenario's, per
  quote unit: the mean-variance objective every policy is ranked by. The drift-driven part of
  the mean of C (the no-hedge book's bet on the market) is deliberately not in it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from keeper.backtest.engine import PathOutcomes

JSON_FIELDS = (
    "hedge_cost_std_ratio",
    "option_price",
    "hedge_cost_mean",
    "hedge_cost_std",
    "rebalances_mean",
    "gas_paid_mean",
    "fees_paid_mean",
    "slippage_paid_mean",
    "tracking_error",
    "total_cost",
)


@dataclass(frozen=True)
class PolicyMeasures:
    policy: str
    family: str
    param: float | None
    option_price: float
    hedge_cost_mean: float
    hedge_cost_std: float
    hedge_cost_std_ratio: float
    hedge_cost_stderr: float  # standard error of the mean
    rebalances_mean: float
    gas_paid_mean: float
    fees_paid_mean: float
    slippage_paid_mean: float
    costs_mean: float
    tracking_error: float
    total_cost: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def measure(
    outcomes: PathOutcomes,
    *,
    policy: str,
    family: str,
    param: float | None,
    option_price: float,
    risk_aversion: float,
) -> PolicyMeasures:
    """Summarise ``outcomes``; see the module docstring for each formula."""
    n_paths = outcomes.hedge_cost.size
    std = float(np.std(outcomes.hedge_cost, ddof=1)) if n_paths > 1 else 0.0
    gas = float(outcomes.gas.mean())
    fees = float(outcomes.fees.mean())
    slippage = float(outcomes.slippage.mean())
    costs = gas + fees + slippage
    return PolicyMeasures(
        policy=policy,
        family=family,
        param=param,
        option_price=option_price,
        hedge_cost_mean=float(outcomes.hedge_cost.mean()),
        hedge_cost_std=std,
        hedge_cost_std_ratio=std / abs(option_price) if option_price else math.inf,
        hedge_cost_stderr=std / math.sqrt(n_paths),
        rebalances_mean=float(outcomes.rebalances.mean()),
        gas_paid_mean=gas,
        fees_paid_mean=fees,
        slippage_paid_mean=slippage,
        costs_mean=costs,
        tracking_error=math.sqrt(float(outcomes.deviation_sq_mean.mean())),
        total_cost=costs + risk_aversion * std * std,
    )
