"""The study on one figure (needs matplotlib, the ``plot`` extra): left, every policy on the
cost-versus-risk plane with its sweep as a frontier; right, one example path with each live
policy's rebalances marked under it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from keeper.backtest.scenario import PolicyFamily
from keeper.backtest.study import PolicyResult, StudyResult
from keeper.errors import ConfigError

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_REFERENCES = (PolicyFamily.NO_HEDGE, PolicyFamily.EVERY_STEP, PolicyFamily.DP_OPTIMAL)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError(
            "--plot needs matplotlib: .venv/bin/pip install 'optkeeper[plot]'"
        ) from exc
    return plt


def plot_study(result: StudyResult, path: Path) -> None:
    """Write the two-panel figure to ``path`` (PNG)."""
    plt = _pyplot()
    figure, (frontier, example) = plt.subplots(1, 2, figsize=(15, 6.2))
    _frontier(frontier, result)
    _example(example, result)
    scenario = result.scenario
    figure.suptitle(
        f"{scenario.name}: {result.n_paths} paths x {result.n_steps} steps, "
        f"option price {result.option_price:,.0f}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _frontier(axes: Any, result: StudyResult) -> None:
    gamma = result.scenario.risk_aversion
    step = result.scenario.step_seconds
    runs_of = [policy.sweep or (policy.headline,) for policy in result.policies]
    costs = [run.measures.costs_mean for runs in runs_of for run in runs]
    risks = [run.measures.hedge_cost_std for runs in runs_of for run in runs]
    with_costs = any(c > 0.0 for c in costs)  # a zero-cost study has no log-scale cost axis
    for index, (policy, runs) in enumerate(zip(result.policies, runs_of, strict=True)):
        risk = [run.measures.hedge_cost_std for run in runs]
        cost = [run.measures.costs_mean for run in runs]
        color = f"C{index}"
        if with_costs and max(cost) <= 0.0:  # no costs at all (no hedge): a line at its risk
            axes.axvline(
                risk[0],
                color=color,
                linestyle="--",
                linewidth=1.2,
                label=f"{policy.spec.name} (no costs)",
            )
            continue
        style = "" if policy.spec.family in _REFERENCES else "-"
        axes.plot(
            risk,
            cost,
            style + _MARKERS[index % len(_MARKERS)],
            color=color,
            label=policy.spec.name,
            markersize=6,
        )
        best = policy.best.measures
        axes.plot(
            [best.hedge_cost_std],
            [best.costs_mean],
            "o",
            markersize=13,
            markerfacecolor="none",
            markeredgecolor=color,
        )
        _label_points(axes, policy.spec.family, runs, step)
    best_total = min(p.best.measures.total_cost for p in result.policies)
    axes.set_xscale("log")
    if with_costs:
        x = np.geomspace(min(risks) * 0.8, max(risks) * 1.2, 400)
        for level in (best_total, 2 * best_total):
            y = level - gamma * x * x
            keep = y > 0
            axes.plot(x[keep], y[keep], ":", color="grey", linewidth=1)
        axes.set_yscale("log")
        positive = [c for c in costs if c > 0.0]
        axes.set_ylim(min(positive) / 2.0, max(positive) * 2.0)
        subtitle = (
            f"dotted: total cost = {best_total:,.0f} and {2 * best_total:,.0f} USD "
            f"(costs + {gamma:g} x variance)"
        )
    else:
        axes.set_ylim(-1.0, 1.0)
        subtitle = "no costs in this study: every setting sits at 0; only the risk differs"
    axes.set_xlabel("risk: std of the hedging cost (USD)")
    axes.set_ylabel("mean gas + fees + slippage per path (USD)")
    axes.set_title(
        f"cost vs risk (ring: lowest total cost of each policy)\n{subtitle}", fontsize=10
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)


def sweep_label(family: PolicyFamily, param: float | None, step_seconds: float) -> str:
    """A sweep point's parameter with its unit, e.g. ``ra 2e-04/USD``, ``5 units``, ``6h``."""
    if param is None:
        return ""
    if family is PolicyFamily.GAS_ADJUSTED_BAND:
        return f"ra {param:.0e}/USD"
    if family is PolicyFamily.FIXED_THRESHOLD:
        return f"{param:g} units"
    if family is PolicyFamily.TIME_BASED:
        hours = param * step_seconds / 3600.0
        return f"{hours:g}h" if hours < 48 else f"{hours / 24:g}d"
    return f"{param:g}"


def _label_points(axes: Any, family: PolicyFamily, runs: Any, step_seconds: float) -> None:
    """Name every sweep point's parameter, with its unit."""
    for run in runs:
        label = sweep_label(family, run.measures.param, step_seconds)
        if label:
            axes.annotate(
                label,
                (run.measures.hedge_cost_std, run.measures.costs_mean),
                fontsize=7,
                textcoords="offset points",
                xytext=(5, 4),
            )


def _example(axes: Any, result: StudyResult) -> None:
    live = [p for p in result.policies if p.spec.family not in _REFERENCES]
    if not live:
        live = list(result.policies)
    trace = live[0].headline.trace
    step_days = result.scenario.step_seconds / 86400.0
    days = np.arange(trace.spot.size) * step_days
    axes.plot(days, trace.spot, color="black", linewidth=1, label="spot")
    low, high = float(trace.spot.min()), float(trace.spot.max())
    gap = 0.07 * max(high - low, 1e-9 * high)
    for index, policy in enumerate(live):
        _rebalances(axes, policy, days, low - gap * (index + 1), index)
    for leg in result.scenario.book.legs:
        axes.axhline(leg.strike, color="grey", linestyle="--", linewidth=0.8)
    axes.set_ylim(low - gap * (len(live) + 1.5), high + gap)
    axes.set_xlabel("days")
    axes.set_ylabel("spot (USD per underlying); dashed: strike")
    axes.set_title(f"example path {trace.path}: rebalances of each headline setting", fontsize=10)
    axes.legend(fontsize=8, loc="best")
    axes.grid(True, alpha=0.3)


def _rebalances(axes: Any, policy: PolicyResult, days: Any, level: float, index: int) -> None:
    trace = policy.headline.trace
    when = days[:-1][trace.rebalanced]
    param = policy.headline.measures.param
    label = f"{policy.spec.name}" + (f" ({param:g})" if param is not None else "")
    axes.plot(
        when,
        np.full(when.size, level),
        linestyle="none",
        marker="|",
        markersize=12,
        markeredgewidth=1.5,
        color=f"C{index}",
        label=f"{label}: {when.size} rebalances",
    )
