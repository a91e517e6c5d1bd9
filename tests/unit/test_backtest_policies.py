"""The backtester runs the live keeper's own band code, not a copy of it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import keeper.backtest.engine as engine
import keeper.backtest.policies as policies
from keeper.backtest.policies import LivePolicy, ReferencePolicy, build_policy
from keeper.backtest.scenario import PolicyFamily, PolicySpec, VaultSettings, load_scenario
from keeper.backtest.study import build_market, run_policy
from keeper.core import bands
from keeper.core.types import PolicyKind

VAULT = VaultSettings(band_floor=0.1, hard_limit=25.0)


def test_the_policy_factory_and_inputs_are_the_keepers_objects() -> None:
    assert vars(policies)["policy_for"] is bands.policy_for
    assert vars(engine)["BandInputs"] is bands.BandInputs


@pytest.mark.parametrize(
    ("family", "param", "kind", "live_param", "cls"),
    [
        (
            PolicyFamily.GAS_ADJUSTED_BAND,
            2e-4,
            PolicyKind.GAS_ADJUSTED_BAND,
            2e-4,
            bands.GasAdjustedBand,
        ),
        (PolicyFamily.FIXED_THRESHOLD, 5.0, PolicyKind.FIXED_THRESHOLD, 5.0, bands.FixedThreshold),
        (PolicyFamily.TIME_BASED, 36.0, PolicyKind.TIME_BASED, 36 * 600.0, bands.TimeBased),
    ],
)
def test_live_policies_are_built_by_policy_for(
    family: PolicyFamily, param: float, kind: PolicyKind, live_param: float, cls: type
) -> None:
    policy = build_policy("p", family, param, VAULT, 600.0, 1e-4)
    assert isinstance(policy, LivePolicy)
    assert isinstance(policy.band, cls)
    assert policy.band == bands.policy_for(kind, live_param, VAULT.band_floor, VAULT.hard_limit)


def test_references_have_no_band() -> None:
    assert build_policy("n", PolicyFamily.NO_HEDGE, None, VAULT, 600.0, 1e-4) == ReferencePolicy(
        "n", PolicyFamily.NO_HEDGE, hedges=False
    )
    every = build_policy("e", PolicyFamily.EVERY_STEP, None, VAULT, 600.0, 1e-4)
    assert isinstance(every, ReferencePolicy) and every.hedges


def test_the_engine_calls_the_live_evaluate_with_all_paths_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = replace(
        load_scenario("eth_30d_short_call"), n_paths=40, n_steps=144, step_seconds=18000.0
    )
    build = build_market(scenario)
    seen: list[bands.BandInputs] = []
    live_evaluate = bands.GasAdjustedBand.evaluate

    def spy(self: bands.GasAdjustedBand, inputs: bands.BandInputs) -> bands.BandResult:
        seen.append(inputs)
        return live_evaluate(self, inputs)

    monkeypatch.setattr(bands.GasAdjustedBand, "evaluate", spy)
    # with a zero lower bound every path is evaluated (the engine skips those inside it)
    monkeypatch.setattr(
        bands.GasAdjustedBand, "lower_bound", lambda self, i: np.zeros(np.shape(i.deviation))
    )
    spec = PolicySpec("band", PolicyFamily.GAS_ADJUSTED_BAND, 2e-4, ())
    run = run_policy(scenario, build, spec, 2e-4)
    assert len(seen) == scenario.n_steps - 1  # every decision after the initial hedge
    step = 7
    inputs = seen[step - 1]
    assert np.shape(inputs.deviation) == (40,)
    np.testing.assert_array_equal(inputs.spot, build.market.spot[step])
    np.testing.assert_array_equal(inputs.gamma, build.market.option_gamma[step])
    np.testing.assert_array_equal(inputs.fixed_cost, build.market.gas_quote[step])
    assert inputs.risk_aversion == 2e-4
    assert inputs.proportional_cost == pytest.approx(5e-4)  # the 5 bps fee
    assert 0 < run.measures.rebalances_mean < scenario.n_steps


def test_a_band_that_never_acts_only_puts_the_initial_hedge_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replacing the live class's behaviour changes the backtest: the engine has no copy."""
    scenario = replace(
        load_scenario("eth_30d_short_call"), n_paths=20, n_steps=30, step_seconds=86400.0
    )
    build = build_market(scenario)

    def never(self: bands.FixedThreshold, inputs: bands.BandInputs) -> bands.BandResult:
        none = np.zeros(np.shape(inputs.deviation), dtype=bool)
        inf, zero = np.full(none.shape, np.inf), np.zeros(none.shape)
        return bands.BandResult(inf, none, none, inf, zero, zero)

    monkeypatch.setattr(bands.FixedThreshold, "evaluate", never)
    spec = PolicySpec("fixed", PolicyFamily.FIXED_THRESHOLD, 0.5, ())
    assert run_policy(scenario, build, spec, 0.5).measures.rebalances_mean == 1.0


@pytest.mark.parametrize(
    ("family", "param", "cls"),
    [
        (PolicyFamily.GAS_ADJUSTED_BAND, 2e-4, bands.GasAdjustedBand),
        (PolicyFamily.FIXED_THRESHOLD, 3.0, bands.FixedThreshold),
        (PolicyFamily.TIME_BASED, 6.0, bands.TimeBased),
    ],
)
def test_evaluating_only_beyond_the_lower_bound_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, family: PolicyFamily, param: float, cls: type
) -> None:
    scenario = replace(
        load_scenario("eth_30d_short_call"), n_paths=200, n_steps=300, step_seconds=8640.0
    )
    build = build_market(scenario)
    spec = PolicySpec("p", family, param, ())
    fast = run_policy(scenario, build, spec, param)
    monkeypatch.setattr(cls, "lower_bound", lambda self, i: np.zeros(np.shape(i.deviation)))
    full = run_policy(scenario, build, spec, param)
    assert fast.measures.rebalances_mean > 5
    np.testing.assert_array_equal(fast.hedge_cost, full.hedge_cost)
