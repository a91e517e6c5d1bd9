"""Terminal table and JSON document of a study."""

from __future__ import annotations

import math

from keeper.backtest.compare import comparisons
from keeper.backtest.measures import JSON_FIELDS, PolicyMeasures
from keeper.backtest.study import StudyResult


def _clean(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _measures_json(measures: PolicyMeasures) -> dict[str, object]:
    return {key: _clean(value) for key, value in measures.as_dict().items()}


def to_json(result: StudyResult) -> dict[str, object]:
    """The study as a JSON-ready dict; per-policy fields use the names in ``JSON_FIELDS``."""
    scenario = result.scenario
    document: dict[str, object] = {
        "scenario": scenario.name,
        "description": scenario.description,
        "seed": scenario.seed,
        "n_paths": result.n_paths,
        "n_steps": result.n_steps,
        "step_seconds": scenario.step_seconds,
        "horizon_seconds": scenario.horizon_seconds,
        "risk_aversion": scenario.risk_aversion,
        "option_price": result.option_price,
        "fields": list(JSON_FIELDS),
        "data": None,
        "policies": {},
        "sweeps": {},
        "comparisons": [],
    }
    if result.data_report is not None:
        document["data"] = dict(vars(result.data_report))
    document["policies"] = {
        p.spec.name: {**_measures_json(p.headline.measures), "selection": p.selection}
        for p in result.policies
    }
    document["sweeps"] = {
        p.spec.name: [_measures_json(run.measures) for run in p.sweep]
        for p in result.policies
        if p.sweep
    }
    document["comparisons"] = [
        {
            "against": c.against,
            "band_policy": c.band.measures.policy,
            "band_param": c.band.measures.param,
            "band_total_cost": c.band.measures.total_cost,
            "other_policy": c.other.measures.policy,
            "other_param": c.other.measures.param,
            "other_total_cost": c.other.measures.total_cost,
            "saving": c.saving,
            "saving_stderr": c.saving_stderr,
            "saving_fraction": _clean(c.saving_fraction),
        }
        for c in comparisons(result)
    ]
    return document


_COLUMNS = (
    ("policy", 18, "s"),
    ("param", 9, "g"),
    ("std/price", 9, ".4f"),
    ("cost mean", 11, ",.0f"),
    ("rebal", 7, ".1f"),
    ("gas", 9, ",.0f"),
    ("fees", 9, ",.0f"),
    ("slippage", 9, ",.0f"),
    ("track err", 9, ".3f"),
    ("total cost", 11, ",.0f"),
)


def _row(measures: PolicyMeasures, name: str) -> str:
    values: tuple[object, ...] = (
        name,
        measures.param,
        measures.hedge_cost_std_ratio,
        measures.hedge_cost_mean,
        measures.rebalances_mean,
        measures.gas_paid_mean,
        measures.fees_paid_mean,
        measures.slippage_paid_mean,
        measures.tracking_error,
        measures.total_cost,
    )
    cells = []
    for (_title, width, spec), value in zip(_COLUMNS, values, strict=True):
        text = "-" if value is None else format(value, spec)
        cells.append(text.ljust(width) if spec == "s" else text.rjust(width))
    return " ".join(cells)


def _header() -> str:
    return " ".join(
        title.ljust(width) if spec == "s" else title.rjust(width) for title, width, spec in _COLUMNS
    )


def format_table(result: StudyResult, *, show_sweeps: bool = True) -> str:
    """A fixed-width table of the headline settings, then every sweep point."""
    scenario = result.scenario
    lines = [
        f"scenario {scenario.name}: {result.n_paths} paths x {result.n_steps} steps of "
        f"{scenario.step_seconds:g} s, seed {scenario.seed}",
        f"option price (BS, to the writer) {result.option_price:,.2f}; "
        f"total cost = costs + {scenario.risk_aversion:g} x Var(hedge cost)",
    ]
    if result.data_report is not None:
        r = result.data_report
        lines.append(
            f"data {r.source}: {r.rows_read} rows, {r.duplicates_removed} duplicates removed, "
            f"{r.missing_rows} empty rows, {r.gaps_bridged} gaps "
            f"({r.points_bridged} points) bridged"
        )
    lines += ["", _header()]
    lines += [_row(p.headline.measures, p.spec.name) for p in result.policies]
    swept = [p for p in result.policies if p.sweep] if show_sweeps else []
    if swept:
        lines += ["", "sweeps (the frontier):", _header()]
        for policy in swept:
            lines += [_row(run.measures, policy.spec.name) for run in policy.sweep]
    found = comparisons(result)
    if found:
        lines.append("")
    for c in found:
        band, other = c.band.measures, c.other.measures
        verdict = "beats" if c.saving > 0 else "does not beat"
        lines.append(
            f"best gas-adjusted band ({band.param:g}) {verdict} best {c.against} "
            f"({other.param:g}): total cost {band.total_cost:,.0f} vs {other.total_cost:,.0f}, "
            f"saving {c.saving:,.0f} +- {c.saving_stderr:,.0f} ({100 * c.saving_fraction:+.1f}%)"
        )
    return "\n".join(lines)
