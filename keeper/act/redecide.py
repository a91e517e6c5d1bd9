"""The answer to the lifecycle's question "is this journaled trade still wanted?", from this
block's state (v2: each vault's ``stateNonce``, then its deviation, then a simulation)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from keeper.chain.eth import Chain
from keeper.chain.retry import READ_POLICY, RetryPolicy
from keeper.core.types import Action, Decision, VaultState
from keeper.errors import FatalError, RetryableError
from keeper.store import JournalEntry, TxKind
from keeper.tx import Redecide, Verdict

log = logging.getLogger("keeper.act")


BatchCheck = Callable[[JournalEntry], Awaitable[bool]]


async def _always_executes(entry: JournalEntry) -> bool:
    return True


def redecide_from(
    decisions: Sequence[Decision],
    states: Sequence[VaultState],
    executes: BatchCheck = _always_executes,
) -> Redecide:
    """The lifecycle's ``Redecide`` from this block's decisions and vault states.

    A journaled trade is ``STALE`` as soon as one of its vaults has moved since the trade was
    computed: its ``stateNonce`` is no longer the one the leg carries (the vault would refuse
    it on chain anyway: compare-and-swap, so cancelling frees the nonce for fresh work), or
    its deviation lost its sign or half its size (the price came back, or a reorg took the
    move away). It is ``STILL_WANTED`` while every vault is as it was and the calldata, quoted
    when it was signed, still executes now; ``UNKNOWN`` while a vault has no readable
    decision or state in this block (just restarted, unreadable) or the simulation cannot be
    run. Not "the vault still acts": a fee spike widens the band, and cancelling at spike
    prices a trade that is as useful as when it was sent would be the worst of both.
    """
    by_vault = {d.vault: d for d in decisions if d.action != Action.SKIP}
    nonces = {s.address: s.state_nonce for s in states}

    async def redecide(entry: JournalEntry) -> Verdict:
        if entry.kind != TxKind.REBALANCE:
            return Verdict.STILL_WANTED
        sent = entry.payload.get("decisions", {})
        legs = {leg["vault"]: leg for leg in entry.payload.get("legs", [])}
        if not entry.vaults or any(v not in by_vault or v not in nonces for v in entry.vaults):
            return Verdict.UNKNOWN
        for vault in entry.vaults:
            leg = legs.get(vault)
            if leg is not None and int(leg["state_nonce"]) != nonces[vault]:
                return Verdict.STALE
            before = float(sent.get(vault, {}).get("deviation", 0.0))
            now = by_vault[vault].deviation
            if not (before * now > 0 and abs(now) >= abs(before) / 2):
                return Verdict.STALE
        try:
            return Verdict.STILL_WANTED if await executes(entry) else Verdict.STALE
        except RetryableError:
            return Verdict.UNKNOWN

    return redecide


def batch_check(w3: Chain, keeper: str, policy: RetryPolicy = READ_POLICY) -> BatchCheck:
    """Would this journaled settlement (or rebalance) still execute at the latest block?
    v2 trades revert as a whole (stale state nonce, a price past a bound), so it executes
    exactly when the call does not revert."""

    async def executes(entry: JournalEntry) -> bool:
        call = {"from": keeper, "to": entry.to, "data": entry.data}
        try:
            await policy.call(
                lambda: w3.eth.call(call, block_identifier="latest"),  # type: ignore[arg-type]
                f"simulating journaled trade {entry.id}",
            )
        except FatalError as exc:  # reverts: stale state or stale quotes
            log.info(
                "journaled trade no longer simulates: cancel and quote afresh",
                extra={"fields": {"entry": entry.id, "error": str(exc)}},
            )
            return False
        # A RetryableError (node unreachable, rate-limited) propagates: we do not know, and
        # the re-decision is UNKNOWN and the transaction is left as it is until the next block.
        return True

    return executes
