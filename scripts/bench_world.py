"""Extra v2 vaults on a running world node, for the benchmarks (plain JSON-RPC, no Ape).

Each vault copies the book, params and guards of one of the world's vaults (its ceilings are
four times its guards, as the world's are), allowlists the keeper, the SwapRouter and the
BookSettlement, is funded like its template and registered. Calldata comes from the shipped
ABIs; the bytecode from ``ape compile``'s build.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_abi.abi import encode
from eth_account import Account
from eth_typing import HexStr
from web3 import Web3

from keeper.contracts import load_abi
from keeper.core import abi
from keeper.core.abi import abi_type, to_abi
from keeper.core.types import VaultState

ROOT = Path(__file__).resolve().parents[1]
GOVERNANCE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil #0
GUARD_DELAY = 3600


def read_state(w3: Web3, vault: str) -> VaultState:
    return abi.decode_vault_state(vault, bytes(w3.eth.call({"to": vault, "data": abi.GET_STATE})))


def _constructor_args(*args: Any) -> bytes:
    (ctor,) = [e for e in load_abi("OptionsVault") if e["type"] == "constructor"]
    inputs = ctor["inputs"]
    return encode(
        [abi_type(p) for p in inputs], [to_abi(p, a) for p, a in zip(inputs, args, strict=True)]
    )


class Sender:
    """Signs and sends from the governance account with local nonces."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.acct = Account.from_key(GOVERNANCE_KEY)
        self.nonce = int(w3.eth.get_transaction_count(self.acct.address, "pending"))
        self.gas_price = 2 * max(int(w3.eth.get_block("latest")["baseFeePerGas"]), 1) + 10**9
        self.chain_id = w3.eth.chain_id

    def send(self, to: str | None, data: bytes, gas: int, value: int = 0) -> HexStr:
        tx: dict[str, Any] = {
            "nonce": self.nonce,
            "gas": gas,
            "maxFeePerGas": self.gas_price,
            "maxPriorityFeePerGas": 10**9,
            "chainId": self.chain_id,
            "data": data,
            "value": value,
            "type": 2,
        }
        if to:
            tx["to"] = to
        self.nonce += 1
        signed = self.acct.sign_transaction(tx)
        return HexStr(self.w3.eth.send_raw_transaction(signed.raw_transaction).hex())

    def wait(self, tx: HexStr) -> dict[str, Any]:
        receipt = dict(self.w3.eth.wait_for_transaction_receipt(tx, timeout=900))
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx} reverted")
        return receipt


def deploy_vaults(w3: Web3, manifest: dict[str, Any], count: int) -> list[str]:
    """``count`` more vaults, round-robin copies of the world's; their addresses."""
    build = json.loads((ROOT / ".build" / "__local__.json").read_text())
    bytecode = bytes.fromhex(
        build["contractTypes"]["OptionsVault"]["deploymentBytecode"]["bytecode"][2:]
    )
    c = {k: v["address"] for k, v in manifest["contracts"].items()}
    templates = [read_state(w3, v["address"]) for v in manifest["vaults"]]
    s = Sender(w3)
    fund_weth = sum(templates[i % len(templates)].underlying_balance for i in range(count))
    fund_usdc = sum(templates[i % len(templates)].quote_balance for i in range(count))
    # the deployer's ETH for the vaults' WETH (a local node: anvil_setBalance)
    need = fund_weth + 10**21 + w3.eth.get_balance(s.acct.address)
    w3.provider.make_request("anvil_setBalance", [s.acct.address, hex(need)])  # type: ignore[arg-type]
    s.wait(s.send(c["WETH"], abi.function("WETH9", "deposit").encode(), 100_000, value=fund_weth))
    s.wait(
        s.send(
            c["USDC"], abi.function("TestERC20", "mint").encode(s.acct.address, fund_usdc), 200_000
        )
    )
    pending = []
    for i in range(count):
        t = templates[i % len(templates)]
        g = t.guards
        ceilings = {
            "notional_cap": g.notional_cap * 4,
            "max_trade_notional": g.max_trade_notional * 4,
            "loss_budget": g.loss_budget * 4,
        }
        args = (
            s.acct.address,
            c["USDC"],
            c["WETH"],
            c["PriceFeed"],
            t.params,
            g,
            ceilings,
            GUARD_DELAY,
        )
        pending.append(s.send(None, bytecode + _constructor_args(*args), 8_000_000))
    vaults = [str(s.wait(h)["contractAddress"]) for h in pending]
    last = HexStr("")
    for i, vault in enumerate(vaults):
        t = templates[i % len(templates)]
        calls = [
            *(abi.function("IOptionsVault", "writeOption").encode(leg) for leg in t.book),
            abi.function("IOptionsVault", "setKeeper").encode(manifest["keeper"], True),
            abi.function("IOptionsVault", "setRouter").encode(c["SwapRouter"], True),
            abi.function("IOptionsVault", "setSettlement").encode(c["BookSettlement"], True),
        ]
        for data in calls:
            last = s.send(vault, data, 400_000)
        transfer = abi.function("IERC20Metadata", "transfer")
        last = s.send(c["WETH"], transfer.encode(vault, t.underlying_balance), 100_000)
        last = s.send(c["USDC"], transfer.encode(vault, t.quote_balance), 100_000)
        last = s.send(
            c["VaultRegistry"], abi.function("VaultRegistry", "addVault").encode(vault), 200_000
        )
        if i % 50 == 49:  # let the node catch up: a long backlog only slows it down
            s.wait(last)
    if last:
        s.wait(last)
    return vaults


def shift_hedges(
    w3: Web3, vaults: Sequence[str], amount: int, share: float, wait: bool = True
) -> list[str]:
    """Push ``share`` of ``vaults`` out of their bands, half up and half down: every other
    vault gives ``amount`` WETH to governance, the next one gets it. Returns those moved
    (``wait=False``: sent, not waited for, to mine in one block of the caller's)."""
    s = Sender(w3)
    moved = list(vaults[: max(2, int(len(vaults) * share)) // 2 * 2])
    weth = read_weth(w3, vaults[0])
    last = HexStr("")
    for taker, giver in zip(moved[0::2], moved[1::2], strict=True):
        last = s.send(
            taker,
            abi.function("IOptionsVault", "withdraw").encode(weth, s.acct.address, amount),
            200_000,
        )
        last = s.send(
            weth, abi.function("IERC20Metadata", "approve").encode(giver, amount), 100_000
        )
        last = s.send(giver, abi.function("IOptionsVault", "deposit").encode(weth, amount), 200_000)
    if last and wait:
        s.wait(last)
    return moved


def read_weth(w3: Web3, vault: str) -> str:
    (out,) = abi.function("IOptionsVault", "underlying").decode(
        bytes(
            w3.eth.call({"to": vault, "data": abi.function("IOptionsVault", "underlying").selector})
        )
    )
    return str(out)


def kept_state(size: int, world_state: Path) -> tuple[Path, Path]:
    """Where a run keeps the node's state with ``size`` vaults (for this saved world) and
    the list of their addresses. Exactly ``size``: the keeper reads every registered vault."""
    stamp = int(world_state.stat().st_mtime)
    kept = ROOT / ".world" / f"bench-{size}-{stamp}.json"
    return kept, kept.with_suffix(".vaults.json")


def world_with(node: Web3, size: int, world_state: Path, manifest_file: Path) -> list[str]:
    """The world's vaults plus as many more as ``size`` asks for: listed by an earlier run
    whose state the node was started from, or deployed now and the node's state kept
    (``anvil_dumpState``: gzipped JSON, the format ``--load-state`` reads)."""
    manifest = json.loads(manifest_file.read_text())
    vaults = [v["address"] for v in manifest["vaults"]]
    if size <= len(vaults):
        return vaults[:size]
    kept, listed = kept_state(size, world_state)
    if kept.exists() and listed.exists():  # the node was started from it
        return list(json.loads(listed.read_text()))
    t0 = time.perf_counter()
    vaults += deploy_vaults(node, manifest, size - len(vaults))
    print(f"{size} vaults deployed in {time.perf_counter() - t0:.1f}s (kept in {kept.name})")
    dumped = node.provider.make_request("anvil_dumpState", [])  # type: ignore[arg-type]
    kept.write_bytes(gzip.decompress(bytes.fromhex(str(dumped["result"])[2:])))
    listed.write_text(json.dumps(vaults))
    return vaults
