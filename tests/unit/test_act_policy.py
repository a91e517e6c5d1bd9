"""When is a stuck rebalance still worth replacing rather than cancelling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keeper.act import still_needed_for
from keeper.store import JournalEntry, JournalState, TxKind


def entry(kind: TxKind, deviations: dict[str, float]) -> JournalEntry:
    fields: dict[str, Any] = dict.fromkeys(JournalEntry.__dataclass_fields__)
    fields |= {
        "id": 1,
        "root_id": 1,
        "kind": kind,
        "state": JournalState.SENT,
        "urgent": False,
        "payload": {
            "vaults": list(deviations),
            "decisions": {v: {"deviation": d} for v, d in deviations.items()},
        },
    }
    return JournalEntry(**fields)


@pytest.mark.parametrize(
    ("sent", "now", "needed"),
    [
        (-0.6, -0.6, True),  # nothing changed (a fee spike widened the band): keep trying
        (-0.6, -0.35, True),  # still more than half as useful
        (-0.6, -0.2, False),  # the price came back most of the way
        (-0.6, +0.3, False),  # the trade would now push the hedge the wrong way
        (+0.6, +0.9, True),
    ],
)
def test_still_needed_while_the_trade_is_at_least_half_as_useful(
    sent: float, now: float, needed: bool
) -> None:
    check = still_needed_for({"0xV": now})
    assert asyncio.run(check(entry(TxKind.REBALANCE, {"0xV": sent}))) is needed


def test_cancels_and_unknown_vaults_are_not_needed() -> None:
    check = still_needed_for({"0xV": -0.6})
    assert asyncio.run(check(entry(TxKind.CANCEL, {"0xV": -0.6}))) is False
    assert asyncio.run(check(entry(TxKind.REBALANCE, {"0xOther": -0.6}))) is False


def test_a_stale_quote_is_cancelled_rather_than_replayed() -> None:
    async def stale(entry: JournalEntry) -> bool:
        return False

    check = still_needed_for({"0xV": -0.6}, stale)
    assert asyncio.run(check(entry(TxKind.REBALANCE, {"0xV": -0.6}))) is False
