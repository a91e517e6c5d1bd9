"""Node failures while reading state come out of the reader as the keeper's own errors."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aiohttp import web
from rpc_servers import error, jsonrpc_server

from keeper.chain.reader import StateReader
from keeper.chain.retry import RetryPolicy
from keeper.chain.rpc import RpcClient, RpcConfig
from keeper.core.types import BlockRef
from keeper.errors import FatalError, RpcError

FAST = RetryPolicy(attempts=3, max_seconds=2, initial_wait=0.001, max_wait=0.002)
BLOCK = BlockRef(10, "0x" + "ab" * 32, "0x" + "cd" * 32, 1_700_000_000)


def refusing(message: str, code: int, asked: Counter[str]) -> Any:
    def handler(request: dict[str, Any]) -> dict[str, Any] | web.Response:
        asked[request["method"]] += 1
        return error(request, code, message)

    return handler


def test_a_node_behind_the_head_is_retried_then_retryable() -> None:
    asked: Counter[str] = Counter()

    async def go() -> None:
        async with jsonrpc_server(refusing("header not found", -32000, asked)) as url:
            rpc = RpcClient(RpcConfig(urls=(url,), policy=FAST))
            try:
                await StateReader(rpc, "0x" + "11" * 20, "0x" + "22" * 20, 200).read(BLOCK, [])
            finally:
                await rpc.close()

    with pytest.raises(RpcError, match="header not found"):
        asyncio.run(go())
    assert asked["eth_call"] == FAST.attempts  # retried by the one policy, then the next head


def test_a_refusal_that_will_not_change_is_fatal_and_not_retried() -> None:
    asked: Counter[str] = Counter()

    async def go() -> None:
        async with jsonrpc_server(refusing("invalid opcode in call", -32015, asked)) as url:
            rpc = RpcClient(RpcConfig(urls=(url,), policy=FAST))
            try:
                await StateReader(rpc, "0x" + "11" * 20, "0x" + "22" * 20, 200).registry_events(
                    1, 5
                )
            finally:
                await rpc.close()

    with pytest.raises(FatalError):
        asyncio.run(go())
    assert asked["eth_getLogs"] == 1
