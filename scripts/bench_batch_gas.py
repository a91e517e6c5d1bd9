"""Benchmark: gas per vault of one ``BookSettlement.settle`` versus separate ``rebalance`` calls.

Starts its own anvil from the saved world (``tools/world.sh build`` is run first if the state
is missing) and deploys, with plain JSON-RPC and the ABIs and bytecode of the Ape build
(``.build/__local__.json``, nothing spelled by hand), 2 x max(sizes) vaults like the world's
first one (its book and params; guards far from binding), funded, with the world's keeper,
SwapRouter and BookSettlement allowlisted: half of them must sell ``--amount`` WETH (their
target is set below what they hold), half must buy as much. Then for every size N, from one
snapshot:

* **netted, opposite**: ceil(N/2) sellers and floor(N/2) buyers in ONE settlement; matched
  amounts trade at the oracle price, only the net (one seller's amount for odd N, nothing for
  even N) goes to the 0.05% pool through the SwapRouter;
* **netted, same direction**: N sellers in one settlement, one swap of N x amount, paid pro rata;
* **separate**: the same N trades as N ``vault.rebalance`` transactions through the 0.05% pool,
  mined in one block.

Prints gasUsed (receipts, so each transaction's 21k base is included) and gas per vault.
The issue's target: a 10-vault netted settlement at most 50% of the gas per vault of separate
rebalances (v1 measured ~164k per rebalance).

    python scripts/bench_batch_gas.py [--sizes 1,3,10] [--amount 1]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_abi.abi import encode  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_account.signers.local import LocalAccount  # noqa: E402
from eth_utils.abi import get_abi_input_types  # noqa: E402
from eth_utils.address import to_checksum_address  # noqa: E402
from web3 import HTTPProvider, Web3  # noqa: E402
from web3.contract import Contract  # noqa: E402
from web3.logs import DISCARD  # noqa: E402

from world import uniswap  # noqa: E402
from world.manifest import Manifest, load_manifest  # noqa: E402
from world.node import AnvilStartError, free_port, running_anvil  # noqa: E402

GOVERNANCE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil #0
KEEPER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil #1
BUILD = ROOT / ".build" / "__local__.json"
WAD = 10**18
USDC = 10**6
FUND_WETH = 20 * WAD  # per vault
FUND_USDC = 100_000 * USDC  # per vault
POOL_FEE = 500
DEADLINE_SECONDS = 3600
V1_REBALANCE_GAS = 164_000  # per vault, v1, measured by the issue
BIG = 10**12 * USDC  # guards that never bind in the benchmark
OVERSHOOT = WAD // 2


# --- node and build --------------------------------------------------------------------------


def ensure_world() -> Path:
    state = ROOT / ".world" / "state.json"
    if not state.exists():
        print("no saved world: running `bash tools/world.sh build`")
        subprocess.run(["bash", str(ROOT / "tools" / "world.sh"), "build"], check=True)
    return state


def rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    if "error" in response:
        raise SystemExit(f"{method} failed: {response['error']}")
    return response["result"]


@dataclass(frozen=True)
class Artifact:
    abi: list[dict[str, Any]]
    bytecode: bytes


def load_build() -> dict[str, Artifact]:
    """ABIs and deployment bytecode of the Ape build (run `ape compile` first)."""
    if not BUILD.exists():
        raise SystemExit(f"{BUILD} is missing: run `ape compile`")
    types = json.loads(BUILD.read_text())["contractTypes"]
    return {
        name: Artifact(t["abi"], bytes.fromhex(t["deploymentBytecode"]["bytecode"][2:]))
        for name, t in types.items()
        if t.get("deploymentBytecode", {}).get("bytecode")
    }


@dataclass
class Signer:
    """Signs and sends type-2 transactions from one key (nonce read from the node each time)."""

    w3: Web3
    account: LocalAccount

    @property
    def address(self) -> str:
        return str(self.account.address)

    def send(self, to: str | None, data: bytes, gas: int) -> str:
        base_fee = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        tx: dict[str, Any] = {
            "nonce": self.w3.eth.get_transaction_count(self.account.address, "pending"),
            "gas": gas,
            "maxFeePerGas": 2 * base_fee + 10**9,
            "maxPriorityFeePerGas": 10**9,
            "chainId": self.w3.eth.chain_id,
            "data": data,
            "type": 2,
        }
        if to is not None:
            tx["to"] = to_checksum_address(to)
        signed = self.account.sign_transaction(tx)
        return "0x" + bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction)).hex()

    def transact(self, to: str | None, data: bytes, gas: int = 3_000_000) -> Any:
        tx_hash = self.send(to, data, gas)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        if receipt["status"] != 1:
            raise SystemExit(f"transaction {tx_hash} to {to} reverted")
        return receipt


class Chain:
    """Contracts of the build and of the world, bound to one node."""

    def __init__(self, w3: Web3, build: dict[str, Artifact], manifest: Manifest) -> None:
        self.w3 = w3
        self.build = build
        c = manifest.contracts
        self.weth = self.at("WETH9", c["WETH"].address)
        self.usdc = self.at("TestERC20", c["USDC"].address)
        self.feed = self.at("MockV3Aggregator", c["PriceFeed"].address)
        self.settlement = self.at("BookSettlement", c["BookSettlement"].address)
        self.registry = self.at("VaultRegistry", c["VaultRegistry"].address)
        self.template = self.at("OptionsVault", manifest.vaults[0].address)
        self.router = w3.eth.contract(
            address=to_checksum_address(c["SwapRouter"].address),
            abi=uniswap.artifact("SwapRouter")["abi"],
        )
        self.quoter = w3.eth.contract(
            address=to_checksum_address(c["QuoterV2"].address),
            abi=uniswap.artifact("QuoterV2")["abi"],
        )

    def at(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=to_checksum_address(address), abi=self.build[name].abi)

    def deploy(self, signer: Signer, name: str, *args: Any) -> Contract:
        artifact = self.build[name]
        ctor = next(e for e in artifact.abi if e["type"] == "constructor")
        data = artifact.bytecode + encode(get_abi_input_types(ctor), list(args))
        receipt = signer.transact(None, data, 8_000_000)
        return self.at(name, receipt["contractAddress"])


def calldata(contract: Contract, fn: str, *args: Any) -> bytes:
    return bytes.fromhex(contract.encode_abi(fn, args=list(args))[2:])


# --- set-up ------------------------------------------------------------------------------------


def deploy_vaults(ch: Chain, gov: Signer, keeper: str, count: int, deviation: int) -> list[str]:
    """``count`` vaults like the world's first, each ``deviation`` (wad) off its target."""
    t = ch.template
    params = list(t.functions.params().call())
    guards = list(t.functions.guards().call())
    guards[1] = guards[2] = guards[4] = BIG  # notionalCap, lossBudget, maxTradeNotional
    guards[6] = OVERSHOOT
    book = t.functions.book().call()
    vaults = []
    for _ in range(count):
        vault = ch.deploy(
            gov,
            "OptionsVault",
            gov.address,
            ch.usdc.address,
            ch.weth.address,
            ch.feed.address,
            tuple(params),
            tuple(guards),
            (BIG, BIG, BIG),
            3600,
        )
        for leg in book:
            gov.transact(vault.address, calldata(vault, "writeOption", tuple(leg)))
        for fn, arg in (
            ("setKeeper", keeper),
            ("setRouter", ch.router.address),
            ("setSettlement", ch.settlement.address),
        ):
            gov.transact(vault.address, calldata(vault, fn, arg, True))
        gov.transact(ch.weth.address, calldata(ch.weth, "transfer", vault.address, FUND_WETH))
        gov.transact(ch.usdc.address, calldata(ch.usdc, "transfer", vault.address, FUND_USDC))
        moved = list(params)
        moved[2] = int(params[2]) + int(vault.functions.deviationWad().call()) - deviation
        gov.transact(vault.address, calldata(vault, "setParams", tuple(moved)))
        gov.transact(ch.registry.address, calldata(ch.registry, "addVault", vault.address))
        vaults.append(vault.address)
    return vaults


def fund_governance(ch: Chain, gov: Signer, vaults: int) -> None:
    rpc(ch.w3, "anvil_setBalance", [gov.address, hex(10**6 * WAD)])
    weth = vaults * FUND_WETH
    data = calldata(ch.weth, "deposit")
    tx = {"from": gov.address, "to": ch.weth.address, "value": weth, "data": data}
    ch.w3.eth.wait_for_transaction_receipt(ch.w3.eth.send_transaction(tx))  # type: ignore[arg-type]
    gov.transact(ch.usdc.address, calldata(ch.usdc, "mint", gov.address, vaults * FUND_USDC))


def refresh_oracle(ch: Chain, gov: Signer) -> int:
    answer = int(ch.feed.functions.latestRoundData().call()[1])
    gov.transact(ch.feed.address, calldata(ch.feed, "setAnswer", answer))
    return answer


# --- plans ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trade:
    vault: str
    sell: bool  # sell WETH for USDC
    amount_in: int


def oracle_value(amount_weth: int, answer: int) -> int:
    return amount_weth * answer * USDC // (WAD * 10**8)


def trade_tuple(ch: Chain, t: Trade, deadline: int) -> tuple[Any, ...]:
    nonce = ch.at("OptionsVault", t.vault).functions.stateNonce().call()
    return (t.sell, t.amount_in, 0, nonce, deadline)


def quote_sell(ch: Chain, amount: int) -> int:
    params = (ch.weth.address, ch.usdc.address, amount, POOL_FEE, 0)
    return int(ch.quoter.functions.quoteExactInputSingle(params).call()[0])


def swap_data(ch: Chain, sell: bool, amount: int, recipient: str, deadline: int) -> bytes:
    token_in, token_out = (ch.weth, ch.usdc) if sell else (ch.usdc, ch.weth)
    params = (token_in.address, token_out.address, POOL_FEE, recipient, deadline, amount, 0, 0)
    return calldata(ch.router, "exactInputSingle", params)


def settlement_call(
    ch: Chain,
    sellers: Sequence[str],
    buyers: Sequence[str],
    amount: int,
    answer: int,
    deadline: int,
) -> bytes:
    """Sellers sell ``amount`` WETH, buyers buy with its oracle value in USDC. Matched pairs at
    the oracle price; the unmatched sellers share the net swap's output pro rata."""
    cash = oracle_value(amount, answer)
    matched = min(len(sellers), len(buyers))
    net_sellers = sellers[matched:]
    net_in = amount * len(net_sellers)
    net_out = quote_sell(ch, net_in) if net_in else 0
    legs = []
    for i, vault in enumerate(sellers):
        payout = cash if i < matched else net_out // len(net_sellers)
        legs.append((vault, trade_tuple(ch, Trade(vault, True, amount), deadline), payout))
    for vault in buyers:
        legs.append((vault, trade_tuple(ch, Trade(vault, False, cash), deadline), amount))
    zero = "0x0000000000000000000000000000000000000000"
    net: tuple[Any, ...] = (zero, False, 0, 0, b"")
    if net_in:
        data = swap_data(ch, True, net_in, ch.settlement.address, deadline)
        net = (ch.router.address, True, net_in, net_out * 99 // 100, data)
    return calldata(ch.settlement, "settle", legs, net)


# --- measuring -----------------------------------------------------------------------------------


class Snapshots:
    """One anvil snapshot to go back to before every measurement (a revert consumes it)."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.id = rpc(w3, "evm_snapshot", [])

    def restore(self) -> None:
        if not rpc(self.w3, "evm_revert", [self.id]):
            raise SystemExit("evm_revert refused the snapshot")
        self.id = rpc(self.w3, "evm_snapshot", [])


def settled_gas(ch: Chain, keeper: Signer, data: bytes, legs: int) -> int:
    receipt = keeper.transact(ch.settlement.address, data, 400_000 + 250_000 * legs)
    traded = ch.template.events.Traded().process_receipt(receipt, errors=DISCARD)
    if len(traded) != legs:
        raise SystemExit(f"{len(traded)} Traded events for {legs} legs")
    return int(receipt["gasUsed"])


def separate_gas(ch: Chain, keeper: Signer, trades: Sequence[Trade], deadline: int) -> int:
    """Total gasUsed of one ``rebalance`` per trade, all mined in one block."""
    rpc(ch.w3, "evm_setAutomine", [False])
    try:
        hashes = []
        for t in trades:
            vault = ch.at("OptionsVault", t.vault)
            data = calldata(
                vault,
                "rebalance",
                trade_tuple(ch, t, deadline),
                ch.router.address,
                swap_data(ch, t.sell, t.amount_in, t.vault, deadline),
            )
            hashes.append(keeper.send(t.vault, data, 800_000))
        rpc(ch.w3, "evm_mine", [])
    finally:
        rpc(ch.w3, "evm_setAutomine", [True])
    total = 0
    for tx_hash in hashes:
        receipt = ch.w3.eth.wait_for_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        if receipt["status"] != 1:
            raise SystemExit(f"rebalance {tx_hash} reverted")
        total += int(receipt["gasUsed"])
    return total


@dataclass(frozen=True)
class Row:
    size: int
    opposite: int
    same: int
    separate_opposite: int
    separate_same: int


def measure(
    ch: Chain,
    gov: Signer,
    keeper: Signer,
    sellers: Sequence[str],
    buyers: Sequence[str],
    sizes: Sequence[int],
    amount: int,
) -> list[Row]:
    snapshots = Snapshots(ch.w3)
    rows = []
    for n in sizes:
        k, m = math.ceil(n / 2), n // 2
        results = []
        for s, b in ((sellers[:k], buyers[:m]), (sellers[:n], [])):
            snapshots.restore()
            answer = refresh_oracle(ch, gov)
            deadline = int(ch.w3.eth.get_block("latest")["timestamp"]) + DEADLINE_SECONDS
            cash = oracle_value(amount, answer)
            results.append(
                settled_gas(ch, keeper, settlement_call(ch, s, b, amount, answer, deadline), n)
            )
            snapshots.restore()
            refresh_oracle(ch, gov)
            trades = [Trade(v, True, amount) for v in s] + [Trade(v, False, cash) for v in b]
            results.append(separate_gas(ch, keeper, trades, deadline))
        rows.append(Row(n, results[0], results[2], results[1], results[3]))
    snapshots.restore()
    return rows


def print_table(rows: Sequence[Row], amount: int) -> None:
    print(
        f"\neach vault trades {Decimal(amount) / WAD} WETH (sell) or its oracle value in USDC "
        f"(buy); swaps through the real Uniswap V3 {POOL_FEE / 1e6:.2%} pool via SwapRouter"
    )
    head = (
        f"{'vaults':>6} | {'netted opposite':>16} {'/vault':>8} | {'netted same dir':>16} "
        f"{'/vault':>8} | {'separate':>10} {'/vault':>8} | {'opp/sep':>7} {'opp/v1':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        per_sep = r.separate_opposite // r.size
        vs_v1 = r.opposite / r.size / V1_REBALANCE_GAS
        print(
            f"{r.size:>6} | {r.opposite:>16,} {r.opposite // r.size:>8,} | {r.same:>16,} "
            f"{r.same // r.size:>8,} | {r.separate_opposite:>10,} {per_sep:>8,} | "
            f"{r.opposite / r.separate_opposite:>7.1%} {vs_v1:>7.1%}"
        )
    same = ", ".join(f"{r.separate_same // r.size:,}" for r in rows)
    print(
        "separate = the same trades as the netted-opposite column, one rebalance each; "
        f"same-direction trades separately: {same} per vault; v1 rebalance: {V1_REBALANCE_GAS:,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,10")
    parser.add_argument("--amount", default="1", help="WETH each vault trades")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    amount = int(Decimal(args.amount) * WAD)
    build = load_build()
    state = ensure_world()
    manifest = load_manifest(ROOT / "deployments" / "world.json")
    port = free_port()
    try:
        with running_anvil(state, port):
            w3 = Web3(HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 120}))
            ch = Chain(w3, build, manifest)
            gov = Signer(w3, Account.from_key(GOVERNANCE_KEY))
            keeper = Signer(w3, Account.from_key(KEEPER_KEY))
            count = max(sizes)
            fund_governance(ch, gov, 2 * count)
            refresh_oracle(ch, gov)
            sellers = deploy_vaults(ch, gov, keeper.address, count, 3 * amount // 2)
            buyers = deploy_vaults(ch, gov, keeper.address, count, -3 * amount // 2)
            print(f"deployed {2 * count} vaults ({count} sellers, {count} buyers)")
            rows = measure(ch, gov, keeper, sellers, buyers, sizes, amount)
    except AnvilStartError as exc:
        raise SystemExit(str(exc)) from exc
    print_table(rows, amount)


if __name__ == "__main__":
    main()
