"""The v1 answer to the lifecycle's question "is this journaled rebalance still wanted?"."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from web3 import AsyncWeb3

from keeper.chain.retry import READ_POLICY, RetryPolicy
from keeper.core.types import Action, Decision
from keeper.errors import FatalError, RetryableError
from keeper.store import JournalEntry, TxKind
from keeper.tx import Redecide, Verdict

log = logging.getLogger("keeper.act")


BatchCheck = Callable[[JournalEntry], Awaitable[bool]]


async def _always_executes(entry: JournalEntry) -> bool:
    return True


def redecide_from(
    decisions: Sequence[Decision], executes: BatchCheck = _always_executes
) -> Redecide:
    """The lifecycle's ``Redecide`` on the v1 contracts, from this block's decisions.

    A journaled rebalance is ``STILL_WANTED`` while, for EVERY one of its vaults, the trade
    it carries would still move the hedge at least half its size towards target (the
    deviation kept its sign and half its size) and its calldata, quoted when it was signed,
    would still execute every leg now; ``STALE`` as soon as one vault's trade is not (it
    would be applied to a state it was not computed from: the price came back, or a reorg
    took the move away); ``UNKNOWN`` while a vault has no readable decision in this block
    (just restarted, unreadable) or the simulation cannot be run. Not "the vault still acts":
    a fee spike widens the band, and cancelling at spike prices a trade that is as useful as
    when it was sent would be the worst of both. On v2 the vault's ``stateNonce`` replaces
    the deviation test (the lead swaps this adapter).
    """
    by_vault = {d.vault: d for d in decisions if d.action != Action.SKIP}

    async def redecide(entry: JournalEntry) -> Verdict:
        if entry.kind != TxKind.REBALANCE:
            return Verdict.STILL_WANTED
        sent = entry.payload.get("decisions", {})
        if not entry.vaults or any(v not in by_vault for v in entry.vaults):
            return Verdict.UNKNOWN
        for vault in entry.vaults:
            before = float(sent.get(vault, {}).get("deviation", 0.0))
            now = by_vault[vault].deviation
            if not (before * now > 0 and abs(now) >= abs(before) / 2):
                return Verdict.STALE
        try:
            return Verdict.STILL_WANTED if await executes(entry) else Verdict.STALE
        except RetryableError:
            return Verdict.UNKNOWN

    return redecide


def batch_check(w3: AsyncWeb3[Any], keeper: str, policy: RetryPolicy = READ_POLICY) -> BatchCheck:
    """Would every leg of this journaled batch still execute at the latest block?"""

    async def executes(entry: JournalEntry) -> bool:
        call = {"from": keeper, "to": entry.to, "data": entry.data}
        try:
            raw = await policy.call(
                lambda: w3.eth.call(call, block_identifier="latest"),  # type: ignore[arg-type]
                f"simulating stuck batch {entry.id}",
            )
            (ok,) = decode(["bool[]"], bytes(raw))
        except (FatalError, DecodingError) as exc:  # reverts, or answers no batch result
            log.warning(
                "stuck batch no longer simulates",
                extra={"fields": {"entry": entry.id, "error": str(exc)}},
            )
            return False
        # A RetryableError (node unreachable, rate-limited) propagates: we do not know, and
        # the re-decision is UNKNOWN and the transaction is left as it is until the next block.
        if not all(ok):
            log.info(
                "stuck batch has stale quotes: cancel and quote afresh",
                extra={"fields": {"entry": entry.id, "legs_ok": list(ok)}},
            )
        return all(ok)

    return executes
