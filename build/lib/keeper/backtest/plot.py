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
_REFERENCES = (PolicyFamily.NO_HEDGE, PolicyFamily.EVERY_STEP)


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
    risks: list[float] = []
    costs: list[float] = []
    for index, policy in enumerate(result.policies):
        runs = policy.sweep or (policy.headline,)
        risk = [run.measures.hedge_cost_std for run in runs]
        cost = [run.measures.costs_mean for run in runs]
        color = f"C{index}"
        if max(cost) <= 0.0:  # no costs at all (no hedge): a line at its risk
            axes.axvline(
                risk[0],
                color=color,
                linestyle="--",
                linewidth=1.2,
                label=f"{policy.spec.name} (no costs)",
            )
            risks += risk
            continue
        risks += risk
        costs += cost
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
        _label_ends(axes, runs, risk, cost)
    best_total = min(p.best.measures.total_cost for p in result.policies)
    x = np.geomspace(min(risks) * 0.8, max(risks) * 1.2, 400)
    for level in (best_total, 2 * best_total):
        y = level - gamma * x * x
        keep = y > 0
        axes.plot(x[keep], y[keep], ":", color="grey", linewidth=1)
    axes.set_xscale("log")
    axes.set_yscale("log")
    positive = [c for c in costs if c > 0.0] or [1.0]
    axes.set_ylim(min(positive) / 2.0, max(positive) * 2.0)
    axes.set_xlabel("risk: std of the hedging cost (quote units)")
    axes.set_ylabel("mean gas + fees + slippage (quote units)")
    axes.set_title(
        f"cost vs risk (ring: lowest total cost of each policy)\ndotted: total cost = "
        f"{best_total:,.0f} and {2 * best_total:,.0f} (costs + {gamma:g} x variance)",
        fontsize=10,
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)


def _label_ends(axes: Any, runs: Any, risk: list[float], cost: list[float]) -> None:
    """Name the parameter at both ends of a sweep (the middle is read off the ordering)."""
    ends = {0, len(runs) - 1} if len(runs) > 1 else {0}
    for position in sorted(ends):
        param = runs[position].measures.param
        if param is not None:
            axes.annotate(
                f"{param:g}",
                (risk[position], cost[position]),
                fontsize=8,
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
    axes.set_ylabel("spot (quote per underlying); dashed: strike")
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
