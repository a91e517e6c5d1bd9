"""When is a stuck rebalance still worth replacing rather than cancelling."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from web3.exceptions import Web3RPCError

from keeper.act import still_needed_for
from keeper.act.stuck import batch_check, urgent_now_for
from keeper.chain.retry import RetryPolicy
from keeper.errors import DecisionPending, RpcError
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


def test_before_the_first_decisions_it_cannot_say_and_waits() -> None:
    check = still_needed_for({})  # just restarted: the journal is settled before any read
    with pytest.raises(DecisionPending):
        asyncio.run(check(entry(TxKind.REBALANCE, {"0xV": -0.6})))


class Node:
    """An ``AsyncWeb3`` stand-in whose eth_call raises ``error`` (or returns ``result``)."""

    def __init__(self, error: Exception | None = None, result: bytes = b"") -> None:
        self.error, self.result, self.calls = error, result, 0
        self.eth = self

    async def call(self, *_: Any, **__: Any) -> bytes:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.result


def rpc_error(message: str, code: int) -> Web3RPCError:
    return Web3RPCError(message, rpc_response={"error": {"code": code, "message": message}})


FAST = RetryPolicy(attempts=2, max_seconds=1, initial_wait=0.001, max_wait=0.002)


@pytest.mark.parametrize(
    "error",
    [aiohttp.ClientConnectionError("connection reset"), rpc_error("rate limit exceeded", 429)],
)
def test_node_trouble_while_simulating_a_stuck_batch_is_retryable_not_a_cancel(
    error: Exception,
) -> None:
    node = Node(error)
    check = batch_check(node, "0x" + "01" * 20, FAST)  # type: ignore[arg-type]
    with pytest.raises(RpcError):
        asyncio.run(check(entry(TxKind.REBALANCE, {"0xV": -0.6})))
    assert node.calls == FAST.attempts


def test_a_settlement_that_reverts_no_longer_executes() -> None:
    """v2 settles as a whole: a stale nonce or quote reverts the call."""
    node = Node(rpc_error("execution reverted", 3))
    check = batch_check(node, "0x" + "01" * 20, FAST)  # type: ignore[arg-type]
    assert asyncio.run(check(entry(TxKind.REBALANCE, {"0xV": -0.6}))) is False


def test_a_settlement_that_still_simulates_still_executes() -> None:
    node = Node(result=b"")  # settle returns nothing
    check = batch_check(node, "0x" + "01" * 20, FAST)  # type: ignore[arg-type]
    assert asyncio.run(check(entry(TxKind.REBALANCE, {"0xV": -0.6}))) is True


def test_a_stuck_rebalance_is_urgent_now_when_one_of_its_vaults_is() -> None:
    urgent: set[str] = set()
    check = urgent_now_for(urgent)
    rebalance = entry(TxKind.REBALANCE, {"0xV": -0.6, "0xW": 0.2})
    assert not check(rebalance)
    urgent.add("0xW")  # the actor's latest decisions: 0xW past its hard limit
    assert check(rebalance) and not check(entry(TxKind.CANCEL, {"0xW": 0.2}))
