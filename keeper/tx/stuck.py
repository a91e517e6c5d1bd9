"""What to do with an open nonce group that needs a decision: the pure half of the lifecycle.

An open group needs one when its newest entry was never accepted by a node (``UNSENT``),
when it must be looked at again after a restart or a reorg (``RECHECK``: the node may have
forgotten it, and the state it was computed from may be gone), or when it has waited
``stuck_after_blocks`` since its broadcast (``STUCK``). The actor's ``Redecide`` callback
answers from the current state; :func:`plan` turns the two into one step. Nothing is ever
re-broadcast or replaced without ``STILL_WANTED``; ``STALE`` cancels on the same nonce (the
work must never execute, and the nonce must not be left to a stale original); ``UNKNOWN``
waits for the next block.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable

from keeper.store import JournalEntry


class Verdict(enum.StrEnum):
    """The actor's answer for journaled work, from the current state."""

    STILL_WANTED = "still_wanted"
    STALE = "stale"
    UNKNOWN = "unknown"


Redecide = Callable[[JournalEntry], Awaitable[Verdict]]

Urgent = frozenset[str] | Callable[[], Awaitable[frozenset[str]]]
"""The vaults past their hard limit now (their stuck work may be replaced up to the
emergency cap): a set, or a coroutine function answering it once the block is decided (the
pipeline follows the journal while the block is still being read)."""


async def urgent_vaults(urgent: Urgent) -> frozenset[str]:
    return urgent if isinstance(urgent, frozenset) else await urgent()


async def unknown(entry: JournalEntry) -> Verdict:
    """A ``Redecide`` for when the keeper has not decided anything yet: everything waits."""
    return Verdict.UNKNOWN


class Why(enum.StrEnum):
    UNSENT = "unsent"  # signed, no node accepted it yet (a refused or lost broadcast, a crash)
    RECHECK = "recheck"  # after a restart or a reorg
    STUCK = "stuck"  # waited stuck_after_blocks since its broadcast


class Step(enum.StrEnum):
    REBROADCAST = "rebroadcast"  # the same journaled bytes
    REPLACE = "replace"  # same work, same nonce, fees +12.5% (new bytes)
    CANCEL = "cancel"  # 0-value self-transfer on the same nonce
    WAIT = "wait"  # ask again next block
    KEEP = "keep"  # nothing to do: the node has it and it is still wanted


def plan(why: Why, verdict: Verdict, known_to_node: bool) -> Step:
    """The step for an open group (table in ``keeper.tx.lifecycle``)."""
    if verdict is Verdict.UNKNOWN:
        return Step.WAIT
    if verdict is Verdict.STALE:
        return Step.CANCEL
    if why is Why.STUCK:
        return Step.REPLACE
    if why is Why.RECHECK and known_to_node:
        return Step.KEEP
    return Step.REBROADCAST
