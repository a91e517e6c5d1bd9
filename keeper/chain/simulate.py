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

EIP-150: https://eips.ethereum.org/EIPS/eip-150 ; eth_createAccessList: EIP-2930 and
https://geth.ethereum.org/docs/interacting-with-geth/rpc/ns-eth#eth-createaccesslist
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keeper.chain.eth import Eth
from keeper.chain.retry import READ_POLICY, RetryPolicy
from keeper.errors import FatalError, KeeperError, RetryableError

LIMIT_FACTORS = (1.5, 2.5)  # of the gas used: the limits tried, in turn, with one eth_call each


async def gas_needed(
    eth: Eth,
    call: Mapping[str, Any],
    cap: int,
    policy: RetryPolicy = READ_POLICY,
    factors: Sequence[float] = LIMIT_FACTORS,
) -> int:
    """A gas limit under which ``call`` succeeds at the latest block (at most ``cap`` when
    one is found that way; ``eth_estimateGas``'s answer otherwise). Raises what
    ``eth_estimateGas`` raises when the call fails (``SimulationReverted``, ``OutOfGas``)."""
    used = await _gas_used(eth, call, policy)
    if used is not None:
        for factor in factors:
            limit = min(cap, int(used * factor))
            if limit < used:
                break
            if await _succeeds(eth, {**call, "gas": limit}, policy):
                return limit
            if limit == cap:
                break
    return int(await policy.call(lambda: eth.estimate_gas(call, "latest"), "eth_estimateGas"))


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
