"""The gas a settlement needs (``keeper.chain.simulate``): measured in two executions the
first time, in one at a guessed limit afterwards, measured again when the guess fails; a
call that reverts at every limit raises what ``eth_estimateGas`` says."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from keeper.chain.retry import RetryPolicy
from keeper.chain.simulate import GasFound, GasGuess, gas_needed
from keeper.errors import SimulationReverted

FAST = RetryPolicy(attempts=1, max_seconds=1.0, initial_wait=0.001, max_wait=0.002)
CAP = 25_000_000


class NestedCallEth:
    """A node whose call uses ``used`` gas and succeeds only at a limit of ``needed`` or more
    (a nested settlement: EIP-150 keeps 1/64 back at every level)."""

    def __init__(self, used: int, needed: int, reverts: bool = False) -> None:
        self.used, self.needed, self.reverts = used, needed, reverts
        self.calls: list[tuple[str, int | None]] = []

    async def create_access_list(self, call: Mapping[str, Any], block: Any) -> Mapping[str, Any]:
        self.calls.append(("createAccessList", None))
        if self.reverts:
            return {"error": "execution reverted", "gasUsed": self.used}
        return {"accessList": [], "gasUsed": self.used}

    async def call(self, call: Mapping[str, Any], block: Any) -> bytes:
        self.calls.append(("call", call["gas"]))
        if self.reverts or call["gas"] < self.needed:
            raise SimulationReverted("execution reverted")
        return b""

    async def estimate_gas(self, call: Mapping[str, Any], block: Any) -> int:
        self.calls.append(("estimateGas", None))
        if self.reverts:
            raise SimulationReverted("execution reverted: VaultRefuses")
        return self.needed


def needed(eth: NestedCallEth, guess: int | None = None) -> GasFound:
    call = {"from": "0x" + "11" * 20, "to": "0x" + "22" * 20, "data": b"\x01"}
    return asyncio.run(gas_needed(eth, call, CAP, FAST, guess=guess))  # type: ignore[arg-type]


def test_measured_first_then_one_execution_at_the_guess() -> None:
    guess = GasGuess()
    eth = NestedCallEth(used=4_000_000, needed=6_000_000)  # 1.5x the gas used suffices
    first = needed(eth, guess.limit_for("settle", 50))
    assert first == GasFound(6_000_000, "measured")
    assert eth.calls == [("createAccessList", None), ("call", 6_000_000)]
    guess.learn("settle", 50, first)
    eth.calls.clear()
    second = needed(eth, guess.limit_for("settle", 50))
    assert second == GasFound(6_600_000, "guess")  # 10% above the measured limit per leg
    assert eth.calls == [("call", 6_600_000)]
    guess.learn("settle", 50, second)  # a guess teaches nothing: it does not creep up
    assert guess.limit_for("settle", 50) == 6_600_000


def test_a_guess_too_low_is_measured_again_and_refines_the_guess() -> None:
    guess = GasGuess()
    guess.learn("settle", 10, GasFound(1_000_000, "measured"))
    eth = NestedCallEth(used=5_000_000, needed=9_000_000)  # deeper: more per leg
    found = needed(eth, guess.limit_for("settle", 50))
    assert found == GasFound(12_500_000, "measured")  # 1.5x fails, 2.5x succeeds
    assert [c for c, _ in eth.calls] == ["call", "createAccessList", "call", "call"]
    guess.learn("settle", 50, found)
    assert guess.limit_for("settle", 50) == 13_750_000  # the deepest per-leg limit, +10%
    assert guess.limit_for("rebalance", 1) is None  # kinds are kept apart


def test_a_reverting_call_raises_what_estimate_gas_says() -> None:
    eth = NestedCallEth(used=100_000, needed=150_000, reverts=True)
    with pytest.raises(SimulationReverted, match="VaultRefuses"):
        needed(eth, guess=200_000)
    assert [c for c, _ in eth.calls] == ["call", "createAccessList", "estimateGas"]
