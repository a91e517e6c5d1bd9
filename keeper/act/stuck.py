"""Stuck rebalances: replace them (same work, higher fees) or cancel them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from web3 import AsyncWeb3

from keeper.chain.retry import READ_POLICY, RetryPolicy
from keeper.errors import DecisionPending, FatalError
from keeper.store import JournalEntry, TxKind

log = logging.getLogger("keeper.act")


BatchCheck = Callable[[JournalEntry], Awaitable[bool]]


async def _always_executes(entry: JournalEntry) -> bool:
    return True


def still_needed_for(deviations: dict[str, float], executes: BatchCheck = _always_executes) -> Any:
    """The confirmer's question for a stuck rebalance: replace it (still needed) or cancel it.

    Still needed while, for one of its vaults, the trade it carries would still move the hedge
    at least half its size towards target (the deviation kept its sign and half its size), and
    its calldata, quoted when it was sent, would still execute every leg now. Not "the vault
    still acts": a fee spike widens the band, and cancelling at spike prices a trade that is as
    useful as when it was sent would be the worst of both. A stale quote is cancelled instead:
    replaying it would pay for legs that revert, and the next block quotes afresh. Before the
    keeper's first decisions (the first block after a restart, when the journal is settled
    before anything is read) it cannot say: ``DecisionPending``, and the confirmer asks again
    next block rather than cancelling a trade that may still be needed.
    """

    async def still_needed(entry: JournalEntry) -> bool:
        if entry.kind != TxKind.REBALANCE:
            return False
        if not deviations:
            raise DecisionPending(f"no decision since the start to judge entry {entry.id} by")
        sent = entry.payload.get("decisions", {})
        for vault in entry.vaults:
            before = float(sent.get(vault, {}).get("deviation", 0.0))
            now = deviations.get(vault)
            if now is not None and before * now > 0 and abs(now) >= abs(before) / 2:
                return await executes(entry)
        return False

    return still_needed


def urgent_now_for(urgent: set[str]) -> Callable[[JournalEntry], bool]:
    """The confirmer's other question: has the work of this stuck rebalance become urgent (one
    of its vaults past its hard limit in the latest decisions)? Then its replacement may go up
    to the emergency cap, like any urgent rebalance: a spike must not pin an urgent vault
    behind its own stuck transaction."""

    def urgent_now(entry: JournalEntry) -> bool:
        return entry.kind == TxKind.REBALANCE and any(v in urgent for v in entry.vaults)

    return urgent_now


def batch_check(w3: AsyncWeb3[Any], keeper: str, policy: RetryPolicy = READ_POLICY) -> BatchCheck:
    """Would this journaled settlement (or rebalance) still execute at the latest block?
    v2 trades revert as a whole (stale state nonce, a price past a bound), so it executes
    exactly when the call does not revert."""

    async def executes(entry: JournalEntry) -> bool:
        call = {"from": keeper, "to": entry.to, "data": entry.data}
        try:
            await policy.call(
                lambda: w3.eth.call(call, block_identifier="latest"),  # type: ignore[arg-type]
                f"simulating stuck rebalance {entry.id}",
            )
        except FatalError as exc:  # reverts: stale state or stale quotes
            log.info(
                "stuck rebalance no longer simulates: cancel and quote afresh",
                extra={"fields": {"entry": entry.id, "error": str(exc)}},
            )
            return False
        # A RetryableError (node unreachable, rate-limited) propagates: we do not know, and
        # the confirmer leaves the transaction as it is until the next block.
        return True

    return executes
