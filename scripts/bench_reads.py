"""Benchmark: time from a new block to all decisions, for 10, 100 and 1000 vaults.

Starts its own anvil from the saved world (``make world`` first), deploys extra vaults
with plain JSON-RPC, then for each size mines blocks and measures, per block:
* the keeper's path: one Multicall3 ``aggregate3`` read (chunked) + the vectorized decision;
* a naive reader: per vault, separate eth_calls for balances, params, book and oracle,
  then the same decision code.
Prints median and p95 latency, RPC calls per block, and the speed-up.

    python scripts/bench_reads.py [--sizes 10,100,1000] [--blocks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_abi.abi import decode, encode  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_typing import HexStr  # noqa: E402
from web3 import AsyncHTTPProvider, AsyncWeb3, HTTPProvider, Web3  # noqa: E402

from keeper.chain.blocks import block_ref  # noqa: E402
from keeper.chain.reader import StateReader  # noqa: E402
from keeper.chain.rpc import RpcClient, RpcConfig  # noqa: E402
from keeper.core import abi  # noqa: E402
from keeper.core.decide import CostConfig, decide_block  # noqa: E402
from keeper.core.types import OptionLeg, OracleRound, VaultState  # noqa: E402
from world.node import AnvilStartError, free_port, running_anvil  # noqa: E402

GOVERNANCE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil #0
COSTS = CostConfig(250_000, 10**9, 5.0, 0.5, 2000)


STATE = ROOT / ".world" / "state.json"
# The reads bench deploys up to 1000 vaults in a few blocks: a large block gas limit.
ANVIL_ARGS = ("--gas-limit", "1000000000", "--code-size-limit", "100000")


def deploy_vaults(w3: Web3, manifest: dict[str, Any], count: int) -> None:
    """Deploy ``count`` more vaults (two legs each) and register them."""
    artifact = json.loads((ROOT / ".build" / "__local__.json").read_text())["contractTypes"][
        "OptionsVault"
    ]
    bytecode = bytes.fromhex(artifact["deploymentBytecode"]["bytecode"][2:])
    acct = Account.from_key(GOVERNANCE_KEY)
    c = manifest["contracts"]
    template = w3.eth.call({"to": manifest["vaults"][0]["address"], "data": abi.GET_STATE})
    state = abi.decode_vault_state(manifest["vaults"][0]["address"], template)
    ctor = abi.encode_vault_constructor(
        acct.address,
        c["USDC"]["address"],
        c["WETH"]["address"],
        c["PriceFeed"]["address"],
        state.params,
    )
    nonce = int(w3.eth.get_transaction_count(acct.address))
    gas_price = 2 * max(w3.eth.get_block("latest")["baseFeePerGas"], 1) + 10**9
    chain_id = w3.eth.chain_id

    def send(to: str | None, data: bytes, gas: int) -> HexStr:
        nonlocal nonce
        tx = {
            "nonce": nonce,
            "gas": gas,
            "maxFeePerGas": gas_price,
            "maxPriorityFeePerGas": 10**9,
            "chainId": chain_id,
            "data": data,
            "value": 0,
            "type": 2,
        }
        if to:
            tx["to"] = to
        signed = acct.sign_transaction(tx)
        nonce += 1
        return HexStr(w3.eth.send_raw_transaction(signed.raw_transaction).hex())

    hashes = [send(None, bytecode + ctor, 4_000_000) for _ in range(count)]
    addresses = [
        w3.eth.wait_for_transaction_receipt(h, timeout=900)["contractAddress"] for h in hashes
    ]
    write = abi.selector("writeOption((uint256,uint64,int256,bool))")
    add = abi.selector("addVault(address)")
    last = HexStr("")
    for i, vault in enumerate(addresses):
        for leg in state.book[:2]:
            last = send(
                vault,
                write
                + encode(
                    ["(uint256,uint64,int256,bool)"],
                    [(leg.strike + i * 10**8, leg.expiry, leg.size, leg.is_call)],
                ),
                300_000,
            )
        last = send(c["VaultRegistry"]["address"], add + encode(["address"], [vault]), 200_000)
        if i % 100 == 99:  # let the node catch up: a long backlog only slows it down
            w3.eth.wait_for_transaction_receipt(last, timeout=900)
    w3.eth.wait_for_transaction_receipt(last, timeout=900)


class NaiveReader:
    """What a simple bot does: one eth_call per value, vault after vault."""

    def __init__(self, w3: AsyncWeb3[Any], weth: str, usdc: str, feed: str) -> None:
        self.w3, self.weth, self.usdc, self.feed = w3, weth, usdc, feed
        self.calls = 0

    async def call(self, to: str, data: bytes, block: str) -> bytes:
        self.calls += 1
        return bytes(await self.w3.eth.call({"to": to, "data": data}, block_identifier=block))  # type: ignore[typeddict-item, arg-type]

    async def read_vault(self, vault: str, block: str, template: VaultState) -> VaultState:
        bal = abi.selector("balanceOf(address)") + encode(["address"], [vault])
        weth = decode(["uint256"], await self.call(self.weth, bal, block))[0]
        usdc = decode(["uint256"], await self.call(self.usdc, bal, block))[0]
        await self.call(vault, abi.selector("params()"), block)
        n = decode(["uint256"], await self.call(vault, abi.selector("bookLength()"), block))[0]
        legs = []
        for i in range(n):
            raw = await self.call(
                vault, abi.selector("option(uint256)") + encode(["uint256"], [i]), block
            )
            s, e, z, c = decode(["(uint256,uint64,int256,bool)"], raw)[0]
            legs.append(OptionLeg(s, e, z, c))
        rid, answer, _, updated, _ = decode(
            ["uint80", "int256", "uint256", "uint256", "uint80"],
            await self.call(self.feed, abi.selector("latestRoundData()"), block),
        )
        for name in ("requestNonce()", "paramsVersion()", "lastRebalanceAt()"):
            await self.call(vault, abi.selector(name), block)
        return VaultState(
            vault,
            usdc,
            weth,
            template.params,
            tuple(legs),
            OracleRound(rid, answer, updated, 8),
            False,
            0,
            0,
            0,
            0,
            0,
        )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(
    url: str, manifest: dict[str, Any], sizes: list[int], blocks: int
) -> list[dict[str, Any]]:
    w3 = AsyncWeb3(AsyncHTTPProvider(url, request_kwargs={"timeout": 120}))
    rpc = RpcClient(RpcConfig(urls=(url,), timeout_seconds=120))
    c = manifest["contracts"]
    reader = StateReader(
        rpc, c["Multicall3"]["address"], c["VaultRegistry"]["address"], chunk_size=200
    )
    naive = NaiveReader(w3, c["WETH"]["address"], c["USDC"]["address"], c["PriceFeed"]["address"])
    head = block_ref(await w3.eth.get_block("latest"))
    all_vaults = await reader.registry_vaults(head)
    rows = []
    for size in sizes:
        vaults = all_vaults[:size]
        fast, slow, fast_calls, slow_calls = [], [], [], []
        for b in range(blocks):
            await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            head = block_ref(await w3.eth.get_block("latest"))
            t0 = time.perf_counter()
            snap = await reader.read(head, vaults)
            decide_block(head, snap.base_fee_wei, snap.vaults, {}, COSTS)
            fast.append(time.perf_counter() - t0)
            fast_calls.append(snap.rpc_calls)
            if b < max(3, blocks // (4 if size >= 1000 else 1)):
                naive.calls = 0
                t0 = time.perf_counter()
                states = [await naive.read_vault(v, head.hash, snap.vaults[0]) for v in vaults]
                await w3.eth.get_block(head.number)
                naive.calls += 1
                decide_block(head, 0, states, {}, COSTS)
                slow.append(time.perf_counter() - t0)
                slow_calls.append(naive.calls)
        rows.append(
            {
                "vaults": size,
                "legs": sum(len(s.book) for s in snap.vaults),
                "multicall_median_ms": 1000 * statistics.median(fast),
                "multicall_p95_ms": 1000 * pct(fast, 0.95),
                "multicall_rpc_calls": statistics.median(fast_calls),
                "naive_median_ms": 1000 * statistics.median(slow),
                "naive_p95_ms": 1000 * pct(slow, 0.95),
                "naive_rpc_calls": statistics.median(slow_calls),
                "speedup": statistics.median(slow) / statistics.median(fast),
            }
        )
    await rpc.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--blocks", type=int, default=20)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    manifest = json.loads((ROOT / "deployments" / "world.json").read_text())
    if not STATE.exists():
        sys.exit("no saved world: run `make world` first")
    port = free_port()
    try:
        with running_anvil(STATE, port, *ANVIL_ARGS):
            url = f"http://127.0.0.1:{port}"
            w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 120}))
            extra = max(sizes) - len(manifest["vaults"])
            t0 = time.perf_counter()
            if extra > 0:
                deploy_vaults(w3, manifest, extra)
            print(f"deployed {max(extra, 0)} extra vaults in {time.perf_counter() - t0:.1f}s")
            rows = asyncio.run(measure(url, manifest, sizes, args.blocks))
    except AnvilStartError as exc:
        sys.exit(str(exc))
    head = (
        f"{'vaults':>6} {'legs':>6} | {'multicall med ms':>16} {'p95 ms':>8} {'calls':>6} | "
        f"{'naive med ms':>12} {'p95 ms':>8} {'calls':>6} | {'speed-up':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['vaults']:>6} {r['legs']:>6} | {r['multicall_median_ms']:>16.1f} "
            f"{r['multicall_p95_ms']:>8.1f} {r['multicall_rpc_calls']:>6.0f} | "
            f"{r['naive_median_ms']:>12.1f} {r['naive_p95_ms']:>8.1f} "
            f"{r['naive_rpc_calls']:>6.0f} | {r['speedup']:>7.1f}x"
        )


if __name__ == "__main__":
    main()
