"""Terminal table and JSON document of a study."""

from __future__ import annotations

import math

from keeper.backtest.compare import Row, comparisons, halves, rows
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
    document["decomposition"] = decomposition_json(result)
    return document


def _row_json(row: Row) -> dict[str, object]:
    parts = row.parts
    return {
        "policy": row.policy,
        "family": row.family,
        "param": row.param,
        "total_cost": parts.total,
        "unhedgeable": parts.unhedgeable,
        "covariance": parts.covariance,
        "own_costs": parts.own_costs,
        "own_error": parts.own_error,
        "controllable": parts.controllable,
        "saving_vs_band": _clean(row.saving),
        "saving_stderr": _clean(row.saving_stderr),
    }


def _samples(result: StudyResult) -> list[tuple[str, list[Row]]]:
    """("all paths", rows), and for real windows ("in sample" and "out of sample", rows)."""
    found = [("all paths", rows(result, None, None))]
    split = halves(result)
    if split is not None:
        first, second = split
        found.append(("in sample (first half, tuned there)", rows(result, first, first)))
        found.append(
            ("out of sample (second half, tuned on the first)", rows(result, first, second))
        )
    return found


def decomposition_json(result: StudyResult) -> dict[str, object]:
    """Per sample, the decomposition of each family's chosen setting (``compare`` docstring)."""
    return {
        "lags": result.overlap_lags,
        "samples": {name: [_row_json(r) for r in found] for name, found in _samples(result)},
    }


def format_decomposition(result: StudyResult) -> list[str]:
    lines = [
        "",
        "what a policy controls: total = unhedgeable (zero-cost every-step hedge) + covariance"
        f" + own costs + own error; saving vs band +- paired SE (Newey-West, "
        f"{result.overlap_lags} lags), USD",
    ]
    head = (
        f"{'policy':18} {'param':>9} {'total':>9} {'unhedg.':>9} {'cov':>8} {'own cost':>9}"
        f" {'own err':>8} {'control.':>9} {'this - band':>16}"
    )
    for name, found in _samples(result):
        lines += ["", f"{name}:", head]
        for r in found:
            p = r.parts
            param = "-" if r.param is None else format(r.param, "g")
            versus = (
                "" if not math.isfinite(r.saving) else f"{r.saving:+,.0f} +- {r.saving_stderr:,.0f}"
            )
            lines.append(
                f"{r.policy:18} {param:>9} {p.total:>9,.0f} {p.unhedgeable:>9,.0f} "
                f"{p.covariance:>8,.0f} {p.own_costs:>9,.0f} {p.own_error:>8,.0f} "
                f"{p.controllable:>9,.0f} {versus:>16}"
            )
    return lines


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


def _param(value: float | None) -> str:
    return "-" if value is None else format(value, "g")


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
    lines += format_decomposition(result)
    found = comparisons(result)
    if found:
        lines.append("")
    for c in found:
        band, other = c.band.measures, c.other.measures
        verdict = "beats" if c.saving > 0 else "does not beat"
        lines.append(
            f"best gas-adjusted band ({_param(band.param)}) {verdict} best {c.against} "
            f"({_param(other.param)}): total cost {band.total_cost:,.0f} vs "
            f"{other.total_cost:,.0f}, "
            f"saving {c.saving:,.0f} +- {c.saving_stderr:,.0f} ({100 * c.saving_fraction:+.1f}%)"
        )
    return "\n".join(lines)
