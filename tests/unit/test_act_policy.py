"""The v1 re-decision: is a journaled rebalance still wanted, stale, or unknown now."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from vaults import vault_state
from web3.exceptions import Web3RPCError

from keeper.act.redecide import batch_check, redecide_from
from keeper.chain.retry import RetryPolicy
from keeper.core.types import Action, Decision, VaultState
from keeper.errors import RpcError
from keeper.store import JournalEntry, JournalState, TxKind
from keeper.tx import Verdict

NONCE = 5  # every vault's stateNonce when the journaled trade was computed


def states(*vaults: str, nonce: int = NONCE) -> list[VaultState]:
    return [vault_state(address=v, state_nonce=nonce) for v in vaults]


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
            "legs": [{"vault": v, "state_nonce": NONCE} for v in deviations],
        },
    }
    return JournalEntry(**fields)


def decisions(deviations: dict[str, float], skipped: tuple[str, ...] = ()) -> list[Decision]:
    made = [
        Decision(
            vault=v,
            block_number=9,
            block_hash="0x09",
            action=Action.REBALANCE,
            reason="band",
            deviation=d,
        )
        for v, d in deviations.items()
    ]
    return made + [
        Decision(vault=v, block_number=9, block_hash="0x09", action=Action.SKIP, reason="x")
        for v in skipped
    ]


def verdict(redecide: Any, e: JournalEntry) -> Verdict:
    result: Verdict = asyncio.run(redecide(e))
    return result


@pytest.mark.parametrize(
    ("sent", "now", "expected"),
    [
        (-0.6, -0.6, Verdict.STILL_WANTED),  # nothing changed (a fee spike widened the band)
        (-0.6, -0.35, Verdict.STILL_WANTED),  # still more than half as useful
        (-0.6, -0.2, Verdict.STALE),  # the price came back most of the way
        (-0.6, +0.3, Verdict.STALE),  # the trade would now push the hedge the wrong way
        (+0.6, +0.9, Verdict.STILL_WANTED),
    ],
)
def test_still_wanted_while_the_trade_is_at_least_half_as_useful(
    sent: float, now: float, expected: Verdict
) -> None:
    redecide = redecide_from(decisions({"0xV": now}), states("0xV"))
    assert verdict(redecide, entry(TxKind.REBALANCE, {"0xV": sent})) is expected


def test_a_batch_is_stale_as_soon_as_one_of_its_legs_is() -> None:
    redecide = redecide_from(decisions({"0xV": -0.6, "0xW": 0.05}), states("0xV", "0xW"))
    assert verdict(redecide, entry(TxKind.REBALANCE, {"0xV": -0.6, "0xW": 0.6})) is Verdict.STALE


def test_a_vault_without_a_readable_decision_is_unknown() -> None:
    redecide = redecide_from(
        decisions({}, skipped=("0xV",)), states("0xV")
    )  # unreadable this block
    assert verdict(redecide, entry(TxKind.REBALANCE, {"0xV": -0.6})) is Verdict.UNKNOWN
    redecide = redecide_from([], [])  # just restarted: nothing decided yet
    assert verdict(redecide, entry(TxKind.REBALANCE, {"0xV": -0.6})) is Verdict.UNKNOWN


def test_a_vault_that_moved_since_the_trade_was_computed_makes_it_stale() -> None:
    """v2 compare-and-swap: the vault's stateNonce moved (it traded, or governance changed
    it), so the journaled trade would revert on chain: cancel it rather than wait."""
    redecide = redecide_from(decisions({"0xV": -0.6}), states("0xV", nonce=NONCE + 1))
    assert verdict(redecide, entry(TxKind.REBALANCE, {"0xV": -0.6})) is Verdict.STALE


def test_a_vault_without_a_state_this_block_is_unknown() -> None:
    redecide = redecide_from(decisions({"0xV": -0.6}), [])
    assert verdict(redecide, entry(TxKind.REBALANCE, {"0xV": -0.6})) is Verdict.UNKNOWN


def test_a_stale_quote_is_stale_rather_than_replayed() -> None:
    async def no_longer_executes(entry: JournalEntry) -> bool:
        return False

    redecide = redecide_from(decisions({"0xV": -0.6}), states("0xV"), no_longer_executes)
    assert verdict(redecide, entry(TxKind.REBALANCE, {"0xV": -0.6})) is Verdict.STALE


def test_node_trouble_while_simulating_is_unknown_not_a_cancel() -> None:
    async def node_down(entry: JournalEntry) -> bool:
        raise RpcError("connection reset")

    redecide = redecide_from(decisions({"0xV": -0.6}), states("0xV"), node_down)
    assert verdict(redecide, entry(TxKind.REBALANCE, {"0xV": -0.6})) is Verdict.UNKNOWN


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
