"""The gas a transaction needs, found in two executions instead of a binary search.

``eth_estimateGas`` binary-searches the gas limit: about twenty executions of the call, which
for a 50-leg settlement is 130-190 ms on anvil. Here: one ``eth_createAccessList`` (one
execution; its ``gasUsed``), then one ``eth_call`` at a limit above it that must succeed.
The limit has to be above the gas used: every nested call gets at most 63/64 of what its
caller has left (EIP-150), and a settlement nests a vault's callback inside the previous
one, so the limit a deep book needs is well above what it uses (measured on the world's
settlements: about 1.9x at 50 legs). ``eth_estimateGas`` remains the fallback when the node
lacks ``eth_createAccessList``, the call fails there, or neither limit settles it; its error
is what the caller sees for a revert (the revert data names the refusing vault).

Once a settlement of some size has been measured, the next one is tried first in ONE
execution: an ``eth_call`` at a limit guessed from the measured ones (:class:`GasGuess`:
the largest measured limit per leg, times the legs, plus a margin). When it succeeds that
limit is the answer; when it fails (a revert, or the guess too low) the two-execution
measurement above runs as before and its answer refines the guess. A guess is never learned
from itself, so it does not creep up.

EIP-150: https://eips.ethereum.org/EIPS/eip-150 ; eth_createAccessList: EIP-2930 and
https://geth.ethereum.org/docs/interacting-with-geth/rpc/ns-eth#eth-createaccesslist
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from keeper.chain.eth import Eth
from keeper.chain.retry import READ_POLICY, RetryPolicy
from keeper.errors import FatalError, KeeperError, RetryableError

LIMIT_FACTORS = (1.5, 2.5)  # of the gas used: the limits tried, in turn, with one eth_call each
GUESS_MARGIN_BPS = 1_000  # a guessed limit is this much above the measured limit per leg

Source = Literal["guess", "measured", "estimate"]


@dataclass(frozen=True)
class GasFound:
    """A limit under which the call succeeded, and how it was found."""

    limit: int
    source: Source


@dataclass
class GasGuess:
    """Measured limits by kind of call (``settle``, ``rebalance``) and legs, to guess the
    next one's limit from (pure; the actor keeps one)."""

    margin_bps: int = GUESS_MARGIN_BPS
    measured: dict[str, dict[int, int]] = field(default_factory=dict)  # kind -> legs -> limit

    def limit_for(self, kind: str, legs: int) -> int | None:
        """The largest measured limit per leg of ``kind`` times ``legs``, plus the margin
        (the limit a nested settlement needs grows faster than its legs: EIP-150's 63/64,
        so the deepest measured one gives the most per leg); None before any measurement."""
        known = self.measured.get(kind)
        if not known or legs < 1:
            return None
        per_leg = max(limit / n for n, limit in known.items())
        return int(per_leg * legs * (10_000 + self.margin_bps) / 10_000)

    def learn(self, kind: str, legs: int, found: GasFound) -> None:
        """Keep a measured limit (a guess or ``eth_estimateGas``'s answer teaches nothing)."""
        if found.source == "measured" and legs >= 1:
            self.measured.setdefault(kind, {})[legs] = found.limit


async def gas_needed(
    eth: Eth,
    call: Mapping[str, Any],
    cap: int,
    policy: RetryPolicy = READ_POLICY,
    factors: Sequence[float] = LIMIT_FACTORS,
    guess: int | None = None,
) -> GasFound:
    """A gas limit under which ``call`` succeeds at the latest block (at most ``cap`` when
    one is found by a guess or a measurement; ``eth_estimateGas``'s answer otherwise).
    Raises what ``eth_estimateGas`` raises when the call fails (``SimulationReverted``,
    ``OutOfGas``)."""
    if guess is not None and guess <= cap and await _succeeds(eth, {**call, "gas": guess}, policy):
        return GasFound(guess, "guess")
    used = await _gas_used(eth, call, policy)
    if used is not None:
        for factor in factors:
            limit = min(cap, int(used * factor))
            if limit < used:
                break
            if await _succeeds(eth, {**call, "gas": limit}, policy):
                return GasFound(limit, "measured")
            if limit == cap:
                break
    estimate = await policy.call(lambda: eth.estimate_gas(call, "latest"), "eth_estimateGas")
    return GasFound(int(estimate), "estimate")


async def _gas_used(eth: Eth, call: Mapping[str, Any], policy: RetryPolicy) -> int | None:
    """The gas one execution uses; None when the node cannot say or the call fails."""
    try:
        found = await policy.call(
            lambda: eth.create_access_list(call, "latest"), "eth_createAccessList"
        )
    except RetryableError:
        raise
    except KeeperError:  # no such method, or the call fails: eth_estimateGas says why
        return None
    if found.get("error"):
        return None
    return int(found["gasUsed"])


async def _succeeds(eth: Eth, call: Mapping[str, Any], policy: RetryPolicy) -> bool:
    try:
        await policy.call(lambda: eth.call(call, "latest"), "eth_call at a gas limit")
    except FatalError:  # reverted (out of gas in a nested frame shows as a revert)
        return False
    return True
