"""The reader decodes each vault's getState once per distinct answer: unchanged bytes from one
block to the next reuse the decoding; changed bytes are decoded afresh."""

from __future__ import annotations

import asyncio
from dataclasses import fields
from typing import Any

from eth_abi.abi import encode
from rpc_servers import jsonrpc_server, ok
from vaults import vault_state

from keeper.chain.reader import StateReader
from keeper.chain.rpc import RpcClient, RpcConfig
from keeper.core import abi
from keeper.core.types import BlockRef, VaultState

A = "0x322813Fd9A801c5507c9de605d63CEA4f2CE6c44"
B = "0xa85233C63b9Ee964Add6F2cffe00Fd84eb32338f"
BLOCK = BlockRef(10, "0x" + "ab" * 32, "0x" + "cd" * 32, 1_700_000_000)


def _state_bytes(state: VaultState) -> bytes:
    (output,) = abi.function("IOptionsVault", "getState").outputs
    d = {f.name: getattr(state, f.name) for f in fields(VaultState)}
    d["oracle_decimals"] = state.oracle.decimals
    return encode([abi.abi_type(output)], [abi.to_abi(output, d)])


def _answer(states: list[VaultState]) -> str:
    word = (1).to_bytes(32, "big")  # basefee, timestamp, registry version
    results = [(True, word), (True, word), (True, word)]
    results += [(True, _state_bytes(s)) for s in states]
    return "0x" + encode(["(bool,bytes)[]"], [results]).hex()


def test_unchanged_state_bytes_reuse_their_decoding_and_changed_ones_are_decoded() -> None:
    answers = [
        _answer([vault_state(address=A), vault_state(address=B)]),
        _answer([vault_state(address=A), vault_state(address=B)]),
        _answer([vault_state(address=A), vault_state(address=B, state_nonce=8)]),
    ]

    def handler(request: dict[str, Any]) -> dict[str, Any]:
        return ok(request, answers.pop(0))

    async def go() -> list[tuple[VaultState, ...]]:
        async with jsonrpc_server(handler) as url:
            rpc = RpcClient(RpcConfig(urls=(url,)))
            reader = StateReader(rpc, "0x" + "11" * 20, "0x" + "22" * 20, 200)
            try:
                return [(await reader.read(BLOCK, [A, B])).vaults for _ in range(3)]
            finally:
                await rpc.close()

    first, second, third = asyncio.run(go())
    assert first == (vault_state(address=A), vault_state(address=B))
    assert second[0] is first[0] and second[1] is first[1]  # the same bytes: not decoded again
    assert third[0] is first[0]
    assert third[1] is not first[1] and third[1].state_nonce == 8  # changed: decoded afresh
