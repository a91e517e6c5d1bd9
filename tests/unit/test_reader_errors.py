"""Node failures while reading state come out of the reader as the keeper's own errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from web3.exceptions import Web3RPCError

from keeper.chain.reader import StateReader
from keeper.chain.retry import RetryPolicy
from keeper.core.types import BlockRef
from keeper.errors import FatalError, RpcError

FAST = RetryPolicy(attempts=3, max_seconds=2, initial_wait=0.001, max_wait=0.002)
BLOCK = BlockRef(10, "0x" + "ab" * 32, "0x" + "cd" * 32, 1_700_000_000)


class RefusingNode:
    """An ``AsyncWeb3`` stand-in whose every eth_call / eth_getLogs gets one JSON-RPC error."""

    def __init__(self, message: str, code: int = -32000) -> None:
        self.error = {"code": code, "message": message}
        self.calls = 0
        self.eth = self

    async def call(self, *_: Any, **__: Any) -> bytes:
        return self._refuse()

    async def get_logs(self, *_: Any) -> list[Any]:
        return self._refuse()

    def _refuse(self) -> Any:
        self.calls += 1
        raise Web3RPCError(
            self.error["message"], rpc_response={"jsonrpc": "2.0", "id": 1, "error": self.error}
        )


def reader(node: RefusingNode) -> StateReader:
    return StateReader(node, "0x" + "11" * 20, "0x" + "22" * 20, 200, policy=FAST)  # type: ignore[arg-type]


def test_a_node_behind_the_head_is_retried_then_retryable() -> None:
    node = RefusingNode("header not found")
    with pytest.raises(RpcError, match="header not found"):
        asyncio.run(reader(node).read(BLOCK, []))
    assert node.calls == FAST.attempts  # retried by the one policy, then the next head


def test_a_refusal_that_will_not_change_is_fatal_and_not_retried() -> None:
    node = RefusingNode("invalid opcode in call", code=-32015)
    with pytest.raises(FatalError):
        asyncio.run(reader(node).registry_events(1, 5))
    assert node.calls == 1
