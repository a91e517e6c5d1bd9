"""The reader decodes each vault's getState once per distinct answer: unchanged bytes from one
block to the next reuse the decoding; changed bytes are decoded afresh."""

from __future__ import annotations

import asyncio
from dataclasses import fields
from typing import Any

import pytest
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


def test_the_same_vaults_send_the_same_multicall_and_a_new_list_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The multicall's calldata is encoded once for a list of vaults (and their book sizes)
    and sent again while they stay the same; another list of vaults is asked for afresh."""
    header = [
        abi.Call3("0x" + "11" * 20, abi.GET_BASEFEE, allow_failure=False),
        abi.Call3("0x" + "11" * 20, abi.GET_BLOCK_TIMESTAMP, allow_failure=False),
        abi.Call3("0x" + "22" * 20, abi.REGISTRY_VERSION, allow_failure=False),
    ]

    def expected(listed: list[str]) -> str:
        calls = header + [abi.Call3(v, abi.GET_STATE) for v in listed]
        return "0x" + abi.encode_aggregate3(calls).hex()

    vaults = [[A, B], [A, B], [A, B], [A]]
    want = [expected(listed) for listed in vaults]
    sent: list[str] = []
    encoded: list[int] = []
    real = abi.encode_aggregate3
    monkeypatch.setattr(abi, "encode_aggregate3", lambda calls: encoded.append(1) or real(calls))

    def handler(request: dict[str, Any]) -> dict[str, Any]:
        sent.append(request["params"][0]["data"])
        return ok(request, _answer([vault_state(address=v) for v in vaults[len(sent) - 1]]))

    async def go() -> None:
        async with jsonrpc_server(handler) as url:
            rpc = RpcClient(RpcConfig(urls=(url,)))
            reader = StateReader(rpc, "0x" + "11" * 20, "0x" + "22" * 20, 200)
            try:
                for listed in vaults:
                    await reader.read(BLOCK, listed)
            finally:
                await rpc.close()

    asyncio.run(go())
    assert sent == want
    # the first read learns the books' sizes (the chunks are sized by gas): encoded again
    # for the second; the third sends the second's calldata; [A] is encoded afresh
    assert len(encoded) == 3
