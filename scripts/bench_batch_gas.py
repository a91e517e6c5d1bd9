"""Benchmark: gas per vault of one ``RebalanceBatcher.execute`` versus separate transactions.

Starts its own anvil from the saved world (``tools/world.sh build`` is run first if the state
is missing), deploys identical vaults with plain JSON-RPC (params and book copied from the
world's first vault, funded with WETH and USDC, the batcher and the keeper as keepers, the
SwapRouter allowlisted), warms them up with one small rebalance each (so every measured swap
is a vault's steady-state one, not its first), refreshes the oracle round and takes a
snapshot. Then, for every batch size N, from that same snapshot:

* one batch: N legs, each a real swap (sell ``--amount`` WETH for USDC through the world's
  Uniswap V3 SwapRouter, quoted by the keeper's ``UniswapDirect``, minOut bounded by
  ``oracle_bound_min_out``), in ONE ``execute(legs, deadline)`` sent by the keeper;
  every leg must emit ``LegExecuted``;
* the same N legs as N separate ``vault.rebalance`` transactions from the keeper, all mined
  in one block.

Every measured block has the same timestamp (12 s after the snapshot), so runs repeat exactly.

Prints gasUsed (receipts, so each transaction's 21k base is included), gas per vault and the
saving of the batch.

    python scripts/bench_batch_gas.py [--sizes 1,3,10] [--amount 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_abi.abi import decode, encode  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_account.signers.local import LocalAccount  # noqa: E402
from eth_utils.address import to_checksum_address  # noqa: E402
from web3 import AsyncHTTPProvider, AsyncWeb3, HTTPProvider, Web3  # noqa: E402

from keeper.chain.uniswap import UniswapDirect  # noqa: E402
from keeper.core import abi  # noqa: E402
from keeper.core.abi import RebalanceLeg  # noqa: E402
from keeper.core.swap import SwapRequest, check_quote, oracle_bound_min_out, to_leg  # noqa: E402
from keeper.core.types import VaultState  # noqa: E402
from keeper.errors import KeeperError  # noqa: E402
from world.node import AnvilStartError, free_port, running_anvil  # noqa: E402

GOVERNANCE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil #0
KEEPER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil #1
WAD = 10**18
FUND_WETH = 5 * WAD  # per vault
FUND_USDC = 50_000 * 10**6  # per vault
WARMUP_WETH = WAD // 10
DEADLINE_SECONDS = 3600
# Tolerance asked of the quote. A 10-leg batch sells into one pool leg after leg, so the last
# leg fills ~0.2% below the quote taken before the batch; 50 bps leaves room for that.
QUOTE_SLIPPAGE_BPS = 50
TX_BASE_GAS = 21_000
BLOCK_SECONDS = 12

OPTION_TYPE = "(uint256,uint64,int256,bool)"


# --- node ------------------------------------------------------------------------------------


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


@dataclass
class Signer:
    """Signs and sends type-2 transactions from one key; the nonce is read from the node on
    every send, so it stays right across ``evm_revert``."""

    w3: Web3
    account: LocalAccount

    @property
    def address(self) -> str:
        return str(self.account.address)

    def send(self, to: str | None, data: bytes, gas: int, value: int = 0) -> str:
        base_fee = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        tx: dict[str, Any] = {
            "nonce": self.w3.eth.get_transaction_count(self.account.address, "pending"),
            "gas": gas,
            "maxFeePerGas": 2 * base_fee + 10**9,
            "maxPriorityFeePerGas": 10**9,
            "chainId": self.w3.eth.chain_id,
            "data": data,
            "value": value,
            "type": 2,
        }
        if to is not None:
            tx["to"] = to_checksum_address(to)
        signed = self.account.sign_transaction(tx)
        return "0x" + bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction)).hex()

    def transact(self, to: str | None, data: bytes, gas: int, value: int = 0) -> Any:
        """Send, wait for the receipt, refuse a reverted transaction."""
        tx_hash = self.send(to, data, gas, value)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        if receipt["status"] != 1:
            raise SystemExit(f"transaction {tx_hash} to {to} reverted")
        return receipt


def call(w3: Web3, to: str, data: bytes) -> bytes:
    return bytes(w3.eth.call({"to": to_checksum_address(to), "data": data}))  # type: ignore[typeddict-item]


# --- world -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    weth: str
    usdc: str
    feed: str
    router: str
    quoter: str
    batcher: str

    @staticmethod
    def from_manifest(manifest: dict[str, Any]) -> World:
        c = manifest["contracts"]
        return World(
            weth=c["WETH"]["address"],
            usdc=c["USDC"]["address"],
            feed=c["PriceFeed"]["address"],
            router=c["SwapRouter"]["address"],
            quoter=c["QuoterV2"]["address"],
            batcher=c["RebalanceBatcher"]["address"],
        )


def read_state(w3: Web3, vault: str) -> VaultState:
    return abi.decode_vault_state(vault, call(w3, vault, abi.GET_STATE))


def deploy_vaults(
    w3: Web3, gov: Signer, keeper: str, world: World, template: VaultState, count: int
) -> list[str]:
    """``count`` vaults like ``template``: book copied, funded, keeper/batcher/router set."""
    artifact = json.loads((ROOT / ".build" / "__local__.json").read_text())["contractTypes"][
        "OptionsVault"
    ]
    bytecode = bytes.fromhex(artifact["deploymentBytecode"]["bytecode"][2:])
    ctor = abi.encode_vault_constructor(
        gov.address, world.usdc, world.weth, world.feed, template.params
    )
    hashes = [gov.send(None, bytecode + ctor, 4_000_000) for _ in range(count)]
    vaults = [
        str(w3.eth.wait_for_transaction_receipt(h)["contractAddress"])  # type: ignore[arg-type]
        for h in hashes
    ]
    gov.transact(world.weth, abi.selector("deposit()"), 100_000, value=FUND_WETH * count)
    gov.transact(
        world.usdc,
        abi.selector("mint(address,uint256)")
        + encode(["address", "uint256"], [gov.address, FUND_USDC * count]),
        100_000,
    )
    now = int(w3.eth.get_block("latest")["timestamp"])
    set_keeper = abi.selector("setKeeper(address,bool)")
    transfer = abi.selector("transfer(address,uint256)")
    last = ""
    for vault in vaults:
        for leg in template.book:
            expiry = leg.expiry if leg.expiry > now + 86_400 else now + 30 * 86_400
            option = (leg.strike, expiry, leg.size, leg.is_call)
            gov.send(
                vault,
                abi.selector(f"writeOption({OPTION_TYPE})") + encode([OPTION_TYPE], [option]),
                300_000,
            )
        for who in (world.batcher, keeper):
            gov.send(vault, set_keeper + encode(["address", "bool"], [who, True]), 100_000)
        gov.send(
            vault,
            abi.selector("setRouter(address,bool)")
            + encode(["address", "bool"], [world.router, True]),
            100_000,
        )
        gov.send(world.weth, transfer + encode(["address", "uint256"], [vault, FUND_WETH]), 100_000)
        last = gov.send(
            world.usdc, transfer + encode(["address", "uint256"], [vault, FUND_USDC]), 100_000
        )
    receipt = w3.eth.wait_for_transaction_receipt(last)  # type: ignore[arg-type]
    if receipt["status"] != 1:
        raise SystemExit("vault setup failed")
    for vault in vaults:
        state = read_state(w3, vault)
        if state.underlying_balance != FUND_WETH or state.quote_balance != FUND_USDC:
            raise SystemExit(f"vault {vault} not funded: {state}")
    return vaults


def refresh_oracle(w3: Web3, gov: Signer, world: World) -> None:
    """A new round at the current answer, updated now: the vaults' heartbeat check passes."""
    answer = decode(["int256"], call(w3, world.feed, abi.selector("latestAnswer()")))[0]
    gov.transact(
        world.feed, abi.selector("setAnswer(int256)") + encode(["int256"], [answer]), 100_000
    )


# --- legs --------------------------------------------------------------------------------------


async def quote_legs(
    url: str, world: World, vaults: Sequence[str], amount: int, deadline: int, state: VaultState
) -> list[RebalanceLeg]:
    """One "sell ``amount`` WETH" leg per vault, the way the keeper builds a direct-route leg."""
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    direct = UniswapDirect(w3, world.quoter, world.router)
    try:
        quotes = await asyncio.gather(
            *(
                direct.quote(world.weth, world.usdc, amount, v, QUOTE_SLIPPAGE_BPS, deadline)
                for v in vaults
            )
        )
    finally:
        await w3.provider.disconnect()
    routers = frozenset({to_checksum_address(world.router)})
    legs = []
    for vault, quote in zip(vaults, quotes, strict=True):
        request = SwapRequest(
            vault=vault,
            sell_underlying=True,
            amount_in=amount,
            underlying=world.weth,
            quote_token=world.usdc,
            oracle_answer=state.oracle.answer,
            oracle_decimals=state.oracle.decimals,
            max_slippage_bps=state.params.max_slippage_bps,
            allowed_routers=routers,
            deadline=deadline,
            slippage_bps=QUOTE_SLIPPAGE_BPS,
        )
        bound = oracle_bound_min_out(
            True,
            amount,
            state.oracle.answer,
            state.oracle.decimals,
            state.params.max_slippage_bps,
        )
        legs.append(to_leg(vault, check_quote(quote, request, bound, routers), True, bound))
    return legs


def build_legs(
    w3: Web3, url: str, world: World, vaults: Sequence[str], amount: int
) -> tuple[list[RebalanceLeg], int]:
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + DEADLINE_SECONDS
    state = read_state(w3, vaults[0])
    return asyncio.run(quote_legs(url, world, vaults, amount, deadline, state)), deadline


# --- measurements ------------------------------------------------------------------------------


def topic0(log: Any) -> str:
    return "0x" + bytes(log["topics"][0]).hex()


def batch_gas(keeper: Signer, world: World, legs: Sequence[RebalanceLeg], deadline: int) -> int:
    """gasUsed of one ``execute``; every leg must have emitted ``LegExecuted``."""
    data = abi.encode_batch_execute(legs, deadline)
    receipt = keeper.transact(world.batcher, data, 500_000 + 400_000 * len(legs))
    executed, failed = set(), []
    for log in receipt["logs"]:
        if str(log["address"]).lower() != world.batcher.lower():
            continue
        if topic0(log) == abi.LEG_EXECUTED_TOPIC:
            executed.add(abi.topic_address(log["topics"][2]))
        elif topic0(log) == abi.LEG_FAILED_TOPIC:
            (reason,) = decode(["bytes"], bytes(log["data"]))
            failed.append(f"{abi.topic_address(log['topics'][2])}: {abi.decode_revert(reason)}")
    if failed:
        raise SystemExit("legs failed: " + "; ".join(failed))
    if executed != {to_checksum_address(leg.vault) for leg in legs}:
        raise SystemExit(f"{len(executed)} LegExecuted for {len(legs)} legs")
    return int(receipt["gasUsed"])


def separate_gas(w3: Web3, keeper: Signer, legs: Sequence[RebalanceLeg], deadline: int) -> int:
    """Total gasUsed of one direct ``vault.rebalance`` transaction per leg, all sent at once and
    mined in one block (as the keeper would send them without the batcher)."""
    rpc(w3, "evm_setAutomine", [False])
    try:
        hashes = [
            keeper.send(leg.vault, abi.encode_vault_rebalance(leg, deadline), 600_000)
            for leg in legs
        ]
        rpc(w3, "evm_mine", [])
    finally:
        rpc(w3, "evm_setAutomine", [True])
    total = 0
    for leg, tx_hash in zip(legs, hashes, strict=True):
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        if receipt["status"] != 1 or not any(
            topic0(log) == abi.REBALANCED_TOPIC and str(log["address"]).lower() == leg.vault.lower()
            for log in receipt["logs"]
        ):
            raise SystemExit(f"direct rebalance of {leg.vault} failed ({tx_hash})")
        total += int(receipt["gasUsed"])
    if len({w3.eth.get_transaction_receipt(h)["blockNumber"] for h in hashes}) != 1:  # type: ignore[arg-type]
        raise SystemExit("the separate transactions did not land in one block")
    return total


@dataclass(frozen=True)
class Row:
    size: int
    batch_gas: int
    separate_gas: int

    @property
    def saving_pct(self) -> float:
        return 100.0 * (1 - self.batch_gas / self.separate_gas)


class Snapshots:
    """One anvil snapshot to go back to before every measurement (a revert consumes it).

    Every measured block gets the same timestamp, one slot after the snapshot's block, so
    timestamp-dependent storage writes (the pool's oracle observation, the vault's
    ``lastRebalanceAt``) cost the same in every measurement and every run.
    """

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.timestamp = int(w3.eth.get_block("latest")["timestamp"])
        self.id = rpc(w3, "evm_snapshot", [])

    def restore(self) -> None:
        if not rpc(self.w3, "evm_revert", [self.id]):
            raise SystemExit("evm_revert refused the snapshot")
        self.id = rpc(self.w3, "evm_snapshot", [])
        rpc(self.w3, "evm_setNextBlockTimestamp", [self.timestamp + BLOCK_SECONDS])


def measure(
    w3: Web3,
    url: str,
    keeper: Signer,
    world: World,
    vaults: Sequence[str],
    sizes: Sequence[int],
    amount: int,
) -> list[Row]:
    snapshots = Snapshots(w3)
    rows = []
    for size in sizes:
        snapshots.restore()
        legs, deadline = build_legs(w3, url, world, vaults[:size], amount)
        batched = batch_gas(keeper, world, legs, deadline)
        snapshots.restore()
        separate = separate_gas(w3, keeper, legs, deadline)
        rows.append(Row(size, batched, separate))
    snapshots.restore()
    return rows


# --- main ----------------------------------------------------------------------------------------


def print_table(rows: Sequence[Row], amount: int) -> None:
    print(f"\nlegs: sell {Decimal(amount) / WAD} WETH -> USDC each, SwapRouter exactInputSingle")
    head = (
        f"{'vaults':>6} | {'batch gas':>10} {'per vault':>10} | "
        f"{'separate gas':>12} {'per vault':>10} | {'saving':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.size:>6} | {r.batch_gas:>10,} {r.batch_gas // r.size:>10,} | "
            f"{r.separate_gas:>12,} {r.separate_gas // r.size:>10,} | {r.saving_pct:>6.1f}%"
        )
    first, last = rows[0], rows[-1]
    if last.size > first.size:
        marginal = (last.batch_gas - first.batch_gas) / (last.size - first.size)
        print(
            f"\nbatch: ~{marginal:,.0f} gas per extra leg, "
            f"~{first.batch_gas - first.size * marginal:,.0f} fixed per transaction "
            f"(incl. the {TX_BASE_GAS:,} base); separate: "
            f"{first.separate_gas // first.size:,} per vault, each paying the base"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,10")
    parser.add_argument("--amount", default="1", help="WETH each leg sells")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    amount = int(Decimal(args.amount) * WAD)
    state = ensure_world()
    manifest = json.loads((ROOT / "deployments" / "world.json").read_text())
    world = World.from_manifest(manifest)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        with running_anvil(state, port, "--code-size-limit", "100000"):
            w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 120}))
            gov = Signer(w3, Account.from_key(GOVERNANCE_KEY))
            keeper = Signer(w3, Account.from_key(KEEPER_KEY))
            template = read_state(w3, manifest["vaults"][0]["address"])
            t0 = time.perf_counter()
            vaults = deploy_vaults(w3, gov, keeper.address, world, template, max(sizes))
            refresh_oracle(w3, gov, world)
            warmup, deadline = build_legs(w3, url, world, vaults, WARMUP_WETH)
            batch_gas(keeper, world, warmup, deadline)
            refresh_oracle(w3, gov, world)
            elapsed = time.perf_counter() - t0
            print(f"deployed and warmed up {len(vaults)} vaults in {elapsed:.1f}s")
            rows = measure(w3, url, keeper, world, vaults, sizes, amount)
    except AnvilStartError as exc:
        raise SystemExit(str(exc)) from exc
    except KeeperError as exc:  # a quote the keeper would refuse: say why, no traceback
        raise SystemExit(f"{type(exc).__name__}: {exc}") from exc
    print_table(rows, amount)


if __name__ == "__main__":
    main()
