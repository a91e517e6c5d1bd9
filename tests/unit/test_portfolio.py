"""Per-vault greeks: the vectorised bincount pass equals a per-leg loop."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from vaults import GUARDS

from keeper.core.greeks import SECONDS_PER_YEAR, bs_greeks
from keeper.core.portfolio import (
    LegArrays,
    legs_from_states,
    portfolio_greeks,
    portfolio_greeks_for_states,
)
from keeper.core.types import OptionLeg, OracleRound, PolicyKind, VaultParams, VaultState

NOW = 1_700_000_000
DAY = 86_400
FIELDS = ("value", "option_delta", "gamma", "vega", "theta")


def _random_book(rng: np.random.Generator, n_vaults: int, n_legs: int) -> LegArrays:
    return LegArrays(
        vault_index=rng.integers(0, n_vaults, n_legs).astype(np.intp),
        strike=rng.uniform(1500.0, 4500.0, n_legs),
        expiry=NOW + rng.integers(-5 * DAY, 200 * DAY, n_legs).astype(np.float64),
        size=rng.normal(0.0, 20.0, n_legs),
        is_call=rng.random(n_legs) < 0.5,
    )


Floats = npt.NDArray[np.float64]


def _loop_sums(
    spot: Floats, vol: Floats, rate: Floats, now: Floats, legs: LegArrays
) -> dict[str, Floats]:
    """The obvious per-leg loop the vectorised pass must reproduce."""
    n = spot.shape[0]
    sums = {f: np.zeros(n) for f in (*FIELDS, "weight", "weighted_t")}
    for i in range(legs.vault_index.shape[0]):
        v = int(legs.vault_index[i])
        t = (legs.expiry[i] - now[v]) / SECONDS_PER_YEAR
        g = bs_greeks(spot[v], legs.strike[i], vol[v], rate[v], t, bool(legs.is_call[i]))
        size = legs.size[i]
        sums["value"][v] += size * g.price
        sums["option_delta"][v] += size * g.delta
        sums["gamma"][v] += size * g.gamma
        sums["vega"][v] += size * g.vega
        sums["theta"][v] += size * g.theta
        if t > 0:
            sums["weight"][v] += abs(size)
            sums["weighted_t"][v] += abs(size) * t
    return sums


def test_vectorised_sums_equal_per_leg_loop() -> None:
    rng = np.random.default_rng(11)
    n_vaults = 25
    legs = _random_book(rng, n_vaults, 400)
    spot = rng.uniform(2000.0, 4000.0, n_vaults)
    vol = rng.uniform(0.3, 1.2, n_vaults)
    rate = rng.uniform(0.0, 0.06, n_vaults)
    now = NOW + rng.integers(0, DAY, n_vaults).astype(np.float64)  # per-vault clocks
    hedge = rng.normal(0.0, 10.0, n_vaults)
    pg = portfolio_greeks(spot, vol, rate, now, legs, hedge)
    ref = _loop_sums(spot, vol, rate, now, legs)
    for field in FIELDS:
        np.testing.assert_allclose(getattr(pg, field), ref[field], rtol=1e-11, atol=1e-9)
    weight = ref["weight"]
    expected_t = np.where(weight > 0, ref["weighted_t"] / np.maximum(weight, 1e-300), 0.0)
    np.testing.assert_allclose(pg.t_years, expected_t, rtol=1e-12)
    np.testing.assert_allclose(pg.net_delta, ref["option_delta"] + hedge, rtol=1e-12, atol=1e-9)
    assert pg.option_delta.shape == (n_vaults,)


def test_vault_without_legs_is_all_zero_and_scalars_broadcast() -> None:
    legs = LegArrays(
        vault_index=np.array([0, 0, 2], dtype=np.intp),
        strike=np.array([3000.0, 3500.0, 2500.0]),
        expiry=np.array([NOW + 30 * DAY, NOW + 60 * DAY, NOW + 7 * DAY], dtype=np.float64),
        size=np.array([-10.0, 5.0, 3.0]),
        is_call=np.array([True, True, False]),
    )
    pg = portfolio_greeks(np.array([3000.0, 3100.0, 2900.0]), 0.8, 0.05, NOW, legs)
    for field in (*FIELDS, "t_years", "net_delta"):
        assert getattr(pg, field)[1] == 0.0
    # vault 0: |size|-weighted expiry of 30 and 60 days with weights 10 and 5
    assert pg.t_years[0] == pytest.approx((10 * 30 + 5 * 60) / 15 * DAY / SECONDS_PER_YEAR)
    assert pg.gamma[0] < 0.0  # net short calls near the money
    assert pg.option_delta[2] < 0.0  # long puts


def test_rejects_leg_of_unknown_vault() -> None:
    legs = LegArrays(
        vault_index=np.array([3], dtype=np.intp),
        strike=np.array([3000.0]),
        expiry=np.array([NOW + DAY], dtype=np.float64),
        size=np.array([1.0]),
        is_call=np.array([True]),
    )
    with pytest.raises(ValueError, match="vault_index"):
        portfolio_greeks(np.array([3000.0, 3000.0]), 0.8, 0.0, NOW, legs)


def _params(vol: float, rate: float) -> VaultParams:
    return VaultParams(
        implied_vol_wad=int(vol * 10**18),
        risk_free_rate_wad=int(rate * 10**18),
        target_delta_wad=0,
        band_floor_wad=10**17,
        hard_limit_wad=50 * 10**18,
        risk_aversion_wad=10**14,
        policy=PolicyKind.GAS_ADJUSTED_BAND,
        policy_param=0,
    )


def _state(
    address: str, price_8dp: int, underlying: int, book: tuple[OptionLeg, ...]
) -> VaultState:
    return VaultState(
        address=address,
        quote_balance=10**12,
        underlying_balance=underlying,
        params=_params(0.8, 0.05),
        book=book,
        oracle=OracleRound(round_id=1, answer=price_8dp, updated_at=NOW - 60, decimals=8),
        paused=False,
        request_nonce=0,
        params_version=1,
        last_rebalance_at=NOW - 3600,
        quote_decimals=6,
        underlying_decimals=18,
        guards=GUARDS,
        state_nonce=0,
        notional_available=GUARDS.notional_cap,
        loss_available=GUARDS.loss_budget,
    )


def test_from_vault_states_converts_units() -> None:
    short_calls = (
        OptionLeg(strike=3200 * 10**8, expiry=NOW + 30 * DAY, size=-100 * 10**18, is_call=True),
        OptionLeg(strike=2800 * 10**8, expiry=NOW + 14 * DAY, size=-25 * 10**17, is_call=False),
    )
    states = [
        _state("0xA", 3000 * 10**8, 40 * 10**18, short_calls),
        _state("0xB", 3050 * 10**8, 7 * 10**17, ()),
    ]
    legs = legs_from_states(states)
    np.testing.assert_array_equal(legs.vault_index, [0, 0])
    np.testing.assert_array_equal(legs.strike, [3200.0, 2800.0])
    np.testing.assert_array_equal(legs.size, [-100.0, -2.5])
    pg = portfolio_greeks_for_states(states, NOW)
    call = bs_greeks(3000.0, 3200.0, 0.8, 0.05, 30 * DAY / SECONDS_PER_YEAR, True)
    put = bs_greeks(3000.0, 2800.0, 0.8, 0.05, 14 * DAY / SECONDS_PER_YEAR, False)
    option_delta = -100.0 * call.delta - 2.5 * put.delta
    assert pg.option_delta[0] == pytest.approx(option_delta, rel=1e-12)
    assert pg.gamma[0] == pytest.approx(-100.0 * call.gamma - 2.5 * put.gamma, rel=1e-12)
    assert pg.net_delta[0] == pytest.approx(option_delta + 40.0, rel=1e-12)
    assert pg.hedge_delta[1] == 0.7
    assert pg.net_delta[1] == 0.7
    assert pg.option_delta[1] == 0.0
