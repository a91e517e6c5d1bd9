"""Benchmark: time from a new block to all decisions, for 10, 100 and 1000 vaults.

Starts its own anvil from the saved world (``make world`` first), deploys extra vaults
with plain JSON-RPC, then for each size mines blocks and measures, per block:
* the keeper's path: one Multicall3 ``aggregate3`` read (chunked) + the vectorized decision;
* a naive reader: per vault, its own getState eth_call and the feed's, one after another,
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
sys.path.insert(0, str(ROOT / "scripts"))

from bench_world import deploy_vaults  # noqa: E402
from web3 import AsyncHTTPProvider, AsyncWeb3, HTTPProvider, Web3  # noqa: E402

from keeper.chain.blocks import block_ref  # noqa: E402
from keeper.chain.reader import StateReader  # noqa: E402
from keeper.chain.rpc import RpcClient, RpcConfig  # noqa: E402
from keeper.core import abi  # noqa: E402
from keeper.core.decide import CostConfig, decide_block  # noqa: E402
from keeper.core.types import VaultState  # noqa: E402
from world.node import AnvilStartError, free_port, running_anvil  # noqa: E402

COSTS = CostConfig(250_000, 10**9, 5.0, 0.5, 2000)


STATE = ROOT / ".world" / "state.json"
# The reads bench deploys up to 1000 vaults in a few blocks: a large block gas limit.
ANVIL_ARGS = ("--gas-limit", "1000000000", "--code-size-limit", "100000")
_LATEST_ROUND = abi.function("AggregatorV3Interface", "latestRoundData")


class NaiveReader:
    """What a simple bot does: one eth_call per vault (its getState) and the feed, vault
    after vault."""

    def __init__(self, w3: AsyncWeb3[Any], feed: str) -> None:
        self.w3, self.feed = w3, feed
        self.calls = 0

    async def call(self, to: str, data: bytes, block: str) -> bytes:
        self.calls += 1
        return bytes(await self.w3.eth.call({"to": to, "data": data}, block_identifier=block))  # type: ignore[typeddict-item, arg-type]

    async def read_vault(self, vault: str, block: str) -> VaultState:
        state = abi.decode_vault_state(vault, await self.call(vault, abi.GET_STATE, block))
        _LATEST_ROUND.decode(await self.call(self.feed, _LATEST_ROUND.selector, block))
        return state


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
    naive = NaiveReader(w3, c["PriceFeed"]["address"])
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
                states = [await naive.read_vault(v, head.hash) for v in vaults]
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
