"""keeper.core.abi against the shipped ABIs: layouts by name, selectors, errors, the build."""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from vaults import vault_state

from keeper.contracts import ABI_DIR, load_abi, render_abi, shipped
from keeper.contracts.export import collect
from keeper.core import abi
from keeper.core.abi import abi_type, decode_revert, decode_vault_state, error_selector, to_abi
from keeper.core.types import (
    Guards,
    NetSwap,
    OptionLeg,
    OracleRound,
    SettleLeg,
    Trade,
    VaultParams,
    VaultState,
)

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".build" / "__local__.json"
VAULT = "0x322813Fd9A801c5507c9de605d63CEA4f2CE6c44"
ROUTER = "0xE592427A0AEce92De3Edee1F18E0157C05861564"


def test_shipped_abis_are_the_build() -> None:
    """Python and Solidity cannot disagree: the package data is what ape compile produced."""
    if not BUILD.exists():
        pytest.skip("no .build/__local__.json: run `ape compile` (tools/setup.sh does)")
    fresh = collect(BUILD, ROOT / "node_modules")
    stale = "the shipped ABI differs from the build: run `make abi` and commit it"
    assert sorted(fresh) == list(shipped()), stale
    for name, entries in fresh.items():
        assert (ABI_DIR / f"{name}.json").read_text() == render_abi(entries), f"{name}: {stale}"


def test_shipped_files_are_in_canonical_form() -> None:
    for name in shipped():
        assert (ABI_DIR / f"{name}.json").read_text() == render_abi(list(load_abi(name)))


def _components(contract: str, struct: str) -> list[str]:
    """snake_case field names of ``struct`` as the ABI lays it out (from any function)."""
    found: list[dict[str, Any]] = []

    def walk(params: list[dict[str, Any]]) -> None:
        for p in params:
            if p.get("internalType", "").removeprefix("struct ").removesuffix("[]") == struct:
                found.append(p)
            walk(p.get("components", []))

    for e in load_abi(contract):
        walk(list(e.get("inputs", [])) + list(e.get("outputs", [])))
    assert found, f"{struct} not in {contract}"
    return [abi.snake(c["name"]) for c in found[0]["components"]]


@pytest.mark.parametrize(
    ("cls", "contract", "struct", "extra"),
    [
        (VaultParams, "IOptionsVault", "IOptionsVault.VaultParams", set()),
        (Guards, "IOptionsVault", "IOptionsVault.Guards", set()),
        (OptionLeg, "IOptionsVault", "IOptionsVault.OptionLeg", set()),
        (OracleRound, "IOptionsVault", "IOptionsVault.OracleRound", {"decimals"}),
        (Trade, "IOptionsVault", "IOptionsVault.Trade", set()),
        (SettleLeg, "ISettlement", "ISettlement.Leg", set()),
        (NetSwap, "ISettlement", "ISettlement.NetSwap", set()),
    ],
)
def test_every_struct_field_is_a_dataclass_field(
    cls: type, contract: str, struct: str, extra: set[str]
) -> None:
    names = [f.name for f in fields(cls)]
    assert [n for n in names if n not in extra] == _components(contract, struct)


def test_vault_state_has_every_get_state_field() -> None:
    layout = set(_components("IOptionsVault", "IOptionsVault.VaultState"))
    mine = {f.name for f in fields(VaultState)} - {"address"}
    assert layout - {"oracle_decimals"} == mine  # oracleDecimals travels in OracleRound


def _as_abi(state: VaultState) -> dict[str, Any]:
    d = {f.name: getattr(state, f.name) for f in fields(VaultState)}
    d["oracle_decimals"] = state.oracle.decimals
    return d


def test_get_state_round_trips_through_the_abi_layout() -> None:
    state = vault_state(address=VAULT, state_nonce=41, loss_available=12_345, quote_decimals=8)
    (output,) = abi.function("IOptionsVault", "getState").outputs
    data = encode([abi_type(output)], [to_abi(output, _as_abi(state))])
    assert decode_vault_state(VAULT, data) == state


def test_get_state_decodes_a_hand_built_tuple_in_struct_order() -> None:
    """The order is the Solidity struct's (not the dataclass's): built from the type string."""
    (output,) = abi.function("IOptionsVault", "getState").outputs
    kind = abi_type(output)
    assert kind.startswith("(uint256,uint256,uint8,uint8,uint8,(uint256,int256,")
    params = (1, -2, 3, 4, 5, 6, 2, 7)
    guards = (50, 8, 9, 3600, 10, 2000, 11, 600)
    raw = (100, 200, 6, 18, 8, params, guards, [(3, 4, -5, True)], (9, 10, 11, True))
    raw += (False, 12, 13, 14, 15, 16, 17)
    s = decode_vault_state(VAULT, encode([kind], [raw]))
    assert (s.quote_decimals, s.underlying_decimals, s.oracle.decimals) == (6, 18, 8)
    assert s.guards.max_slippage_bps == 50 and s.guards.oracle_heartbeat == 600
    assert (s.state_nonce, s.notional_available, s.loss_available) == (12, 16, 17)
    assert s.book == (OptionLeg(3, 4, -5, True),) and s.params.policy == 2


def test_settle_calldata_decodes_to_the_legs_and_the_net() -> None:
    trade = Trade(True, 10**18, 2_900 * 10**6, 7, 1_900_000_000)
    legs = [SettleLeg(VAULT, trade, 2_950 * 10**6)]
    net = NetSwap(ROUTER, False, 5, 4, b"\x01\x02")
    data = abi.encode_settle(legs, net)
    fn = abi.function("ISettlement", "settle")
    assert data[:4] == fn.selector
    (got_legs, got_net) = decode([abi_type(p) for p in fn.inputs], data[4:])
    assert got_legs == (
        (VAULT.lower(), (True, 10**18, 2_900 * 10**6, 7, 1_900_000_000), 2_950 * 10**6),
    )
    assert got_net == (ROUTER.lower(), False, 5, 4, b"\x01\x02")


def test_rebalance_calldata_carries_the_state_nonce() -> None:
    data = abi.encode_vault_rebalance(Trade(False, 3, 2, 99, 5), ROUTER, b"")
    fn = abi.function("IOptionsVault", "rebalance")
    (trade, router, swap) = decode([abi_type(p) for p in fn.inputs], data[4:])
    assert trade == (False, 3, 2, 99, 5) and router == ROUTER.lower() and swap == b""


def test_selectors_are_the_keccak_of_the_abi_signature() -> None:
    assert abi.GET_STATE.hex() == abi.function("IOptionsVault", "getState").selector.hex()
    assert abi.function("Multicall3", "aggregate3").selector.hex() == "82ad56cb"  # canonical
    assert abi.function("IERC20Metadata", "balanceOf").selector.hex() == "70a08231"


def test_custom_errors_decode_with_their_arguments() -> None:
    stale = error_selector("StaleState") + encode(["uint64", "uint64"], [4, 5])
    assert decode_revert(stale) == "StaleState(4, 5)"
    inner = error_selector("Error") + encode(["string"], ["STF"])
    wrapped = error_selector("SwapFailed") + encode(["bytes"], [inner])
    assert decode_revert(wrapped) == "SwapFailed(STF)"
    net = error_selector("NetOutputTooLow") + encode(["uint256", "uint256"], [1, 2])
    assert decode_revert(net) == "NetOutputTooLow(1, 2)"
    assert decode_revert(error_selector("Panic") + encode(["uint256"], [0x11])) == "Panic(0x11)"
    assert decode_revert(b"\xde\xad\xbe\xef").startswith("custom error 0xdeadbeef")
    assert decode_revert(b"") == "execution reverted without data"


def test_chunks_respect_both_the_call_count_and_the_gas_budget() -> None:
    from keeper.core.abi import get_state_gas, plan_chunks

    assert plan_chunks([1] * 5, max_calls=2, gas_budget=100) == [
        range(0, 2),
        range(2, 4),
        range(4, 5),
    ]
    assert plan_chunks([60, 50, 40, 10], max_calls=10, gas_budget=100) == [range(0, 1), range(1, 4)]
    assert plan_chunks([500, 1], max_calls=10, gas_budget=100) == [range(0, 1), range(1, 2)]
    assert plan_chunks([], max_calls=10, gas_budget=100) == []
    chunks = plan_chunks([get_state_gas(2)] * 1000, max_calls=5000, gas_budget=20_000_000)
    assert all(sum(get_state_gas(2) for _ in c) <= 20_000_000 for c in chunks)
    assert [i for c in chunks for i in c] == list(range(1000))


SIGNATURE = re.compile(r"^[A-Za-z_]\w*\((\w+(\[\d*\])*|\(.*\)(\[\d*\])*)?(,.*)?\)$")


def _string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def test_no_signature_is_spelled_by_hand() -> None:
    """Selectors and topics come from the ABIs: no 'name(types)' literal in code."""
    paths = [*(ROOT / "keeper").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]
    found = [
        f"{p.relative_to(ROOT)}: {s}"
        for p in paths
        for s in _string_constants(p)
        if SIGNATURE.match(s) and re.search(r"\((u?int|address|bool|bytes|string|\()", s)
    ]
    assert SIGNATURE.match("transfer(address,uint256)")  # the check itself works
    assert found == []
