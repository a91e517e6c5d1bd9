"""Stuck rebalances: replace them (same work, higher fees) or cancel them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from web3 import AsyncWeb3
from web3.exceptions import Web3Exception

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
    replaying it would pay for legs that revert, and the next block quotes afresh.
    """

    async def still_needed(entry: JournalEntry) -> bool:
        if entry.kind != TxKind.REBALANCE:
            return False
        sent = entry.payload.get("decisions", {})
        for vault in entry.vaults:
            before = float(sent.get(vault, {}).get("deviation", 0.0))
            now = deviations.get(vault)
            if now is not None and before * now > 0 and abs(now) >= abs(before) / 2:
                return await executes(entry)
        return False

    return still_needed


def batch_check(w3: AsyncWeb3[Any], keeper: str) -> BatchCheck:
    """Would every leg of this journaled batch still execute at the latest block?"""

    async def executes(entry: JournalEntry) -> bool:
        call = {"from": keeper, "to": entry.to, "data": entry.data}
        try:
            raw = await w3.eth.call(call, block_identifier="latest")  # type: ignore[arg-type]
            (ok,) = decode(["bool[]"], bytes(raw))
        except (ValueError, DecodingError, Web3Exception) as exc:
            log.warning(
                "stuck batch no longer simulates",
                extra={"fields": {"entry": entry.id, "error": str(exc)}},
            )
            return False
        if not all(ok):
            log.info(
                "stuck batch has stale quotes: cancel and quote afresh",
                extra={"fields": {"entry": entry.id, "legs_ok": list(ok)}},
            )
        return all(ok)

    return executes
