"""The reader's per-block multicall: a vault is read in full (``getState``) once per configHash
and then only for what moves (``getHotState``), merged into the state read in full; a changed
configHash is read in full again at the same block; unchanged bytes reuse their decoding."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from rpc_servers import jsonrpc_server, ok
from vaults import PARAMS, vault_state

from keeper.chain.reader import Snapshot, StateReader
from keeper.chain.rpc import RpcClient, RpcConfig
from keeper.core import abi
from keeper.core.types import BlockRef, VaultState

A = "0x322813Fd9A801c5507c9de605d63CEA4f2CE6c44"
B = "0xa85233C63b9Ee964Add6F2cffe00Fd84eb32338f"
MULTICALL, REGISTRY = "0x" + "11" * 20, "0x" + "22" * 20
BLOCK = BlockRef(10, "0x" + "ab" * 32, "0x" + "cd" * 32, 1_700_000_000)
WORD = (1).to_bytes(32, "big")  # basefee, timestamp, registry version


def _encoded(function: str, value: dict[str, Any]) -> bytes:
    (output,) = abi.function("IOptionsVault", function).outputs
    return encode([abi.abi_type(output)], [abi.to_abi(output, value)])


def state_bytes(state: VaultState) -> bytes:
    d = {f.name: getattr(state, f.name) for f in fields(VaultState)}
    d["oracle_decimals"] = state.oracle.decimals
    return _encoded("getState", d)


def hot_bytes(state: VaultState, config_hash: bytes) -> bytes:
    o = state.oracle
    d = {f.name: getattr(state, f.name) for f in fields(VaultState)}
    d["oracle"] = {"round_id": o.round_id, "answer": o.answer, "updated_at": o.updated_at}
    d["oracle"]["ok"] = o.ok
    return _encoded("getHotState", d | {"config_hash": config_hash})


@dataclass
class Node:
    """Answers aggregate3 like a node: each sub-call by its target and selector, from the
    vaults' states now; records what each request asked for."""

    states: dict[str, VaultState]
    hashes: dict[str, bytes]
    no_hot: frozenset[str] = frozenset()  # vaults whose code has no getHotState
    odd_hot: frozenset[str] = frozenset()  # vaults whose getHotState has another layout
    asked: list[list[tuple[str, str]]] | None = None  # per request: (vault, "full" | "hot")
    calldata: list[str] | None = None

    def handler(self, request: dict[str, Any]) -> dict[str, Any]:
        data = bytes.fromhex(request["params"][0]["data"][2:])
        (calls,) = decode(["(address,bool,bytes)[]"], data[4:])
        results, asked = [], []
        for target, _, call in calls:
            vault = abi.checksum(target)
            if call[:4] == abi.GET_STATE:
                asked.append((vault, "full"))
                results.append((True, state_bytes(self.states[vault])))
            elif call[:4] == abi.GET_HOT_STATE:
                asked.append((vault, "hot"))
                hot = hot_bytes(self.states[vault], self.hashes[vault])
                if vault in self.odd_hot:
                    hot = WORD
                results.append((vault not in self.no_hot, b"" if vault in self.no_hot else hot))
            else:
                results.append((True, WORD))
        (self.asked if self.asked is not None else []).append(asked)
        (self.calldata if self.calldata is not None else []).append("0x" + data.hex())
        return ok(request, "0x" + encode(["(bool,bytes)[]"], [results]).hex())


def reads(node: Node, blocks: list[Callable[[], None] | None], vaults: list[str]) -> list[Snapshot]:
    """One read per block; before each, its change to the node (None: nothing changes)."""

    async def go() -> list[Snapshot]:
        async with jsonrpc_server(node.handler) as url:
            rpc = RpcClient(RpcConfig(urls=(url,)))
            reader = StateReader(rpc, MULTICALL, REGISTRY, 200)
            out = []
            try:
                for change in blocks:
                    if change is not None:
                        change()
                    out.append(await reader.read(BLOCK, vaults))
            finally:
                await rpc.close()
            return out

    return asyncio.run(go())


def node_of(**kw: Any) -> Node:
    states = {A: vault_state(address=A), B: vault_state(address=B)}
    return Node(states, {A: b"\x0a" * 32, B: b"\x0b" * 32}, asked=[], calldata=[], **kw)


def test_a_vault_is_read_in_full_once_then_for_what_moves_merged_into_it() -> None:
    node = node_of()

    def trade_b() -> None:  # a trade moves B's balances and nonce, not its config
        node.states[B] = replace(node.states[B], state_nonce=8, underlying_balance=7)

    first, second, third = reads(node, [None, None, trade_b], [A, B])
    assert node.asked == [
        [(A, "full"), (A, "hot"), (B, "full"), (B, "hot")],
        [(A, "hot"), (B, "hot")],
        [(A, "hot"), (B, "hot")],
    ]
    assert first.vaults == second.vaults == (vault_state(address=A), vault_state(address=B))
    assert third.vaults[0] is second.vaults[0]  # the same bytes: not decoded again
    assert third.vaults[1] == node.states[B]  # merged: exactly what getState says
    assert [s.rpc_calls for s in (first, second, third)] == [1, 1, 1]


def test_a_vault_whose_config_hash_changed_is_read_in_full_again_in_the_same_block() -> None:
    node = node_of()
    new_params = replace(PARAMS, band_floor_wad=PARAMS.band_floor_wad * 2)

    def governance() -> None:
        node.states[A] = replace(node.states[A], params=new_params, params_version=2)
        node.hashes[A] = b"\x0c" * 32

    first, second = reads(node, [None, governance], [A, B])
    assert node.asked[1:] == [[(A, "hot"), (B, "hot")], [(A, "full"), (A, "hot")]]
    assert second.vaults[0].params == new_params and second.vaults[0] == node.states[A]
    assert second.vaults[1] == first.vaults[1] and second.rpc_calls == 2


def test_a_vault_without_get_hot_state_is_read_in_full_every_block(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = node_of(no_hot=frozenset({B}))
    with caplog.at_level(logging.WARNING, logger="keeper.reader"):
        snapshots = reads(node, [None, None, None], [A, B])
    assert node.asked[1:] == [[(A, "hot"), (B, "full")]] * 2
    assert all(s.vaults == (vault_state(address=A), vault_state(address=B)) for s in snapshots)
    warned = [r for r in caplog.records if "without getHotState" in r.getMessage()]
    assert len(warned) == 1  # said once, when it was found


def test_a_vault_whose_hot_state_has_another_layout_is_read_in_full_never_skipped() -> None:
    node = node_of(odd_hot=frozenset({A}))
    snapshots = reads(node, [None, None], [A, B])
    assert node.asked[1] == [(A, "full"), (B, "hot")]  # A: getState alone from now on
    assert all(s.vaults == (vault_state(address=A), vault_state(address=B)) for s in snapshots)
    assert all(not s.unreadable for s in snapshots)


def test_the_same_vaults_send_the_same_multicall_and_a_new_list_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The multicall's calldata is encoded once for a list of vaults (how each is read,
    their book sizes) and sent again while they stay the same; another list is asked for
    afresh."""
    node = node_of()
    encoded: list[int] = []
    real = abi.encode_aggregate3
    monkeypatch.setattr(abi, "encode_aggregate3", lambda calls: encoded.append(1) or real(calls))
    lists = [[A, B], [A, B], [A, B], [A]]

    async def go() -> None:
        async with jsonrpc_server(node.handler) as url:
            rpc = RpcClient(RpcConfig(urls=(url,)))
            reader = StateReader(rpc, MULTICALL, REGISTRY, 200)
            try:
                for listed in lists:
                    await reader.read(BLOCK, listed)
            finally:
                await rpc.close()

    asyncio.run(go())
    calldata = node.calldata or []
    # the first read is in full; the second reads hot (encoded afresh); the third sends the
    # second's calldata; [A] is encoded afresh
    assert calldata[1] == calldata[2] != calldata[0] and calldata[3] != calldata[2]
    assert len(encoded) == 3
