"""The on-chain Black-Scholes delta (contracts/libraries/BlackScholes.sol) against the keeper's
float greeks (world.blackscholes over keeper.core.greeks): within 1e-6 per unit of size."""

from __future__ import annotations

import itertools
import math
from typing import Any

import ape
import pytest
from contract_helpers import ORACLE, PRICE, WAD, World, refresh_oracle

from world.blackscholes import Leg, book_delta

TOLERANCE = 1e-6  # per unit of underlying, docs/interfaces.md
YEAR = 365 * 86400


@pytest.fixture(scope="module")
def harness(deployer: Any, project: Any) -> Any:
    return deployer.deploy(project.MathHarness)


def test_ln_exp_and_the_normal_cdf_are_accurate(harness: Any) -> None:
    for x in (1e-9, 0.01, 0.5, 0.70710678, 0.9999, 1.0, 1.0001, 1.5, 2.0, 10.0, 1234.5, 1e12):
        assert harness.ln(int(x * 1e18)) / 1e18 == pytest.approx(math.log(x), abs=1e-12), x
    for x in (0.0, -1e-6, -0.3466, -0.5, -1.0, -4.5, -20.0, -41.0):
        got = harness.exp(int(x * 1e18)) / 1e18
        assert got == pytest.approx(math.exp(x), rel=1e-11, abs=1e-17), x
    for x in (-9.5, -6.0, -3.0, -1.0, -0.1, 0.0, 0.1, 0.5, 1.0, 2.5, 6.0, 9.5):
        exact = 0.5 * math.erfc(-x / math.sqrt(2.0))
        assert abs(harness.cdf(int(x * 1e18)) / 1e18 - exact) < 7.5e-8, x


@pytest.mark.parametrize("is_call", [True, False])
def test_leg_delta_matches_python_over_strikes_vols_and_expiries(
    harness: Any, is_call: bool
) -> None:
    spot = PRICE * ORACLE
    worst = 0.0
    for ratio in (0.5, 0.8, 0.95, 1.0, 1.05, 1.3, 2.0):
        for vol in (0.05, 0.3, 0.8, 2.0):
            for seconds in (60, 3600, 86400, 30 * 86400, 2 * YEAR):
                strike = round(PRICE * ratio * ORACLE)
                got = harness.delta(spot, strike, seconds, int(vol * 1e18), int(0.05e18), is_call)
                leg = Leg(strike / ORACLE, seconds, 1.0, is_call)
                want = book_delta([leg], PRICE, 0, vol, 0.05)
                worst = max(worst, abs(got / 1e18 - want))
    print(f"\nworst |on-chain - Python| delta ({'call' if is_call else 'put'}): {worst:.2e}")
    assert worst < TOLERANCE


def test_vault_delta_matches_python_on_every_world_book(world: World, deployer: Any) -> None:
    refresh_oracle(world, deployer)
    now = int(ape.chain.blocks.head.timestamp)
    for name, vault in world.vaults.items():
        book = [
            Leg(leg.strike / ORACLE, int(leg.expiry), leg.size / WAD, bool(leg.isCall))
            for leg in vault.book()
        ]
        size = sum(abs(leg.size) for leg in book)
        want = book_delta(book, PRICE, now, 0.8, 0.05)
        got = vault.optionsDeltaWad() / WAD
        assert abs(got - want) < TOLERANCE * size, name


def test_expired_legs_count_zero(world: World, deployer: Any) -> None:
    vault = world.vaults["short-straddle"]  # two of its legs expire after 7 days
    expiry = min(int(leg.expiry) for leg in vault.book())
    ape.chain.pending_timestamp = expiry
    refresh_oracle(world, deployer)
    now = int(ape.chain.blocks.head.timestamp)
    live = [
        Leg(leg.strike / ORACLE, int(leg.expiry), leg.size / WAD, bool(leg.isCall))
        for leg in vault.book()
        if int(leg.expiry) > now
    ]
    assert len(live) == 2
    want = book_delta(live, PRICE, now, 0.8, 0.05)
    assert abs(vault.optionsDeltaWad() / WAD - want) < TOLERANCE * 40


def test_gas_per_book_leg(world: World, deployer: Any) -> None:
    """Measured, not asserted against a time: gas of optionsDeltaWad per leg of the book."""
    refresh_oracle(world, deployer)
    vault = world.vaults["short-calls"]
    web3 = ape.chain.provider.web3
    call = {"to": vault.address, "data": bytes(vault.optionsDeltaWad.encode_input())}
    gas = [web3.eth.estimate_gas(call)]
    expiry = int(ape.chain.blocks.head.timestamp) + 20 * 86400
    for i in range(6):
        vault.writeOption(
            (round(PRICE * (0.9 + 0.04 * i)) * ORACLE, expiry, -WAD, i % 2 == 0), sender=deployer
        )
        gas.append(web3.eth.estimate_gas(call))
    per_leg = (gas[-1] - gas[0]) / 6
    print(f"\ngas: optionsDeltaWad with 2..8 legs = {gas}; {per_leg:.0f} per leg")
    assert all(b > a for a, b in itertools.pairwise(gas))
