"""Benchmark: head -> broadcast of the real keeper at N vaults, against a naive per-vault keeper.

Starts its own anvil from the saved world (``make world`` first), deploys vaults up to each
size (``scripts/bench_world.py``; run for one size, the node's state with its vaults is kept
in ``.world/`` for later runs), and puts a recording JSON-RPC proxy between the keepers and
the node: it timestamps every request by method. The local 0x-style aggregator runs as in
``make demo`` (on the node directly: its calls are not the keeper's). Per measured block:

1. governance pushes a share of the vaults out of their bands, half up and half down (netting
   must show), and one block is mined with all of it (automine is off): the head;
2. the real keeper's objects (``Keeper.build`` + ``build_actor``: reader, decisions, book,
   router, sender) process that head; the proxy's first ``eth_sendRawTransaction`` after the
   head is the broadcast;
3. the same hedges are pushed out again and a naive keeper handles the next head: one
   getState per vault, a QuoterV2 call per fee tier per vault, one ``rebalance`` transaction
   per vault, each estimated, signed and sent in turn (web3, as a simple bot would).

Prints p50 / p95 head -> first broadcast (and p50 head -> last broadcast), the real keeper's
stage breakdown, RPC calls per block by method, and gas per vault, for both keepers.

    python scripts/bench_latency.py [--sizes 10,100] [--shares 0.1,1.0] [--blocks 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import logging
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from bench_world import (  # noqa: E402
    Sender,
    deploy_vaults,
    kept_state,
    shift_hedges,
    world_with,
)
from eth_account import Account  # noqa: E402
from web3 import AsyncHTTPProvider, AsyncWeb3, HTTPProvider, Web3  # noqa: E402
from web3.exceptions import TransactionNotFound  # noqa: E402

from keeper.act import RebalanceActor, build_actor  # noqa: E402
from keeper.chain.blocks import block_ref  # noqa: E402
from keeper.chain.uniswap import (  # noqa: E402
    decode_quote_exact_input_single,
    encode_exact_input_single,
    encode_quote_exact_input_single,
)
from keeper.config import load_settings  # noqa: E402
from keeper.core import abi  # noqa: E402
from keeper.core.decide import CostConfig, decide_block  # noqa: E402
from keeper.core.planner import TradeSpec, size_trade  # noqa: E402
from keeper.core.types import Action, Trade  # noqa: E402
from keeper.runner import Keeper, make_rpc  # noqa: E402
from keeper.store import Store  # noqa: E402
from world.manifest import load_manifest  # noqa: E402
from world.market import MarketDriver  # noqa: E402
from world.node import AnvilStartError, free_port, running_anvil  # noqa: E402

STATE = ROOT / ".world" / "state.json"
MANIFEST = ROOT / "deployments" / "world.json"
ANVIL_ARGS = ("--gas-limit", "1000000000", "--code-size-limit", "100000")
KEEPER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil #1
NAIVE_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"  # anvil #2
WAD = 10**18
SHIFT = 3 * WAD  # WETH moved from one vault to the next: past the band of the world's vaults


# --- the recording proxy ------------------------------------------------------------------------
# The proxy runs in a process of its own, as the aggregator does: in the keeper's process they
# would share its event loop and GIL and the benchmark would measure them too. Timestamps are
# CLOCK_MONOTONIC (time.monotonic), which every process on the machine shares.


@dataclass
class Recorder:
    """Every JSON-RPC request that passed the proxy, with when it arrived (asked over HTTP)."""

    url: str

    def since(self, t0: float) -> list[tuple[float, str]]:
        with urllib.request.urlopen(f"{self.url}/_calls?since={t0!r}", timeout=30) as reply:
            return [(float(t), str(m)) for t, m in json.loads(reply.read())]


def _proxy_main(upstream: str, port: int) -> None:
    calls: list[tuple[float, str]] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        now = time.monotonic()
        payload = json.loads(body)
        for item in payload if isinstance(payload, list) else [payload]:
            calls.append((now, str(item.get("method"))))
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(
            upstream, data=body, headers={"content-type": "application/json"}
        ) as reply:
            return web.Response(body=await reply.read(), content_type="application/json")

    async def recorded(request: web.Request) -> web.StreamResponse:
        since = float(request.query.get("since", "0"))
        return web.json_response([c for c in calls if c[0] >= since])

    async def session_ctx(app: web.Application) -> Any:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        yield
        await app["session"].close()

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/", forward)
    app.router.add_get("/_calls", recorded)
    app.cleanup_ctx.append(session_ctx)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


@contextlib.contextmanager
def running_proxy(upstream: str) -> Iterator[tuple[Recorder, str]]:
    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(
        target=_proxy_main, args=(upstream, port), daemon=True
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"
    _wait_http(url + "/_calls")
    try:
        yield Recorder(url), url
    finally:
        proc.terminate()
        proc.join(10)


@contextlib.contextmanager
def running_aggregator(upstream: str) -> Iterator[str]:
    """The local 0x-style aggregator as ``make demo`` runs it: its own process."""
    port = free_port()
    cmd = [sys.executable, "-m", "keeper.aggsvc", "--rpc-url", upstream, "--manifest"]
    cmd += [str(MANIFEST), "--port", str(port), "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/_stats")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_http(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- one measured block --------------------------------------------------------------------------


@dataclass
class Sample:
    latency_ms: float | None  # head -> first broadcast
    last_ms: float | None  # head -> last broadcast
    calls: Counter[str]
    gas_per_vault: float | None
    stages: dict[str, float] = field(default_factory=dict)
    vaults_sent: int = 0
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (ms after the head, method)


def _receipts(w3: Web3, txs: list[str], blocks: int = 5) -> list[Any]:
    """The receipts of ``txs``, mining up to ``blocks`` more blocks for those still pending
    (one block holds them all on this node; a miss is reported with the node's pool)."""
    txs = [h if h.startswith("0x") else "0x" + h for h in txs]  # HexBytes.hex() has none
    found: dict[str, Any] = {}
    for _ in range(blocks + 1):
        for h in txs:
            if h not in found:
                with contextlib.suppress(TransactionNotFound):
                    found[h] = w3.eth.get_transaction_receipt(h)  # type: ignore[arg-type]
        if len(found) == len(txs):
            break
        mine(w3)
    missing = [h for h in txs if h not in found]
    if missing:
        pool = w3.provider.make_request("txpool_inspect", [])  # type: ignore[arg-type]
        print(f"  {len(missing)} keeper transactions not mined: {missing}; pool {pool}")
    return [found[h] for h in txs if h in found]


def _gas_per_vault(w3: Web3, txs: list[str]) -> tuple[float | None, int]:
    gas = vaults = 0
    for receipt in _receipts(w3, txs):
        gas += int(receipt["gasUsed"])
        vaults += sum(
            1 for x in receipt["logs"] if "0x" + bytes(x["topics"][0]).hex() == abi.TRADED_TOPIC
        )
    return (gas / vaults if vaults else None), vaults


def mine(node: Web3) -> None:
    node.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


PROFILER: cProfile.Profile | None = None  # --profile: the measured ticks only

REFILL_SECONDS = 900  # between measured blocks: the vaults' buckets refill a quarter window


def refill(node: Web3, driver: MarketDriver) -> None:
    """Time moves on (buckets refill), arbitrage brings both pools back to the oracle and
    the oracle posts a fresh round at the same price (one block)."""
    node.provider.make_request("evm_increaseTime", [REFILL_SECONDS])  # type: ignore[arg-type]
    driver.move_to(driver.oracle_answer())


async def keeper_block(keeper: Keeper, recorder: Recorder, node: Web3) -> Sample:
    mine(node)
    t0 = time.monotonic()
    head = block_ref(await keeper.rpc.call("eth_getBlockByNumber", ["latest", False]))
    if PROFILER is not None:
        PROFILER.enable()
    await keeper.pipeline.tick(head)
    if PROFILER is not None:
        PROFILER.disable()
    done = time.monotonic()
    mine(node)  # the keeper's transactions
    seen = recorder.since(t0)
    sends = [t for t, m in seen if m == "eth_sendRawTransaction"]
    actor = keeper.pipeline.actor
    assert isinstance(actor, RebalanceActor)
    tick = keeper.pipeline.stages
    assert tick is not None
    stages = {"head": 1000 * (done - t0) - 1000 * sum(vars(tick).values())}
    stages |= {k: 1000 * v for k, v in vars(tick).items() if k != "act"}
    stages |= {f"act.{k}": 1000 * v for k, v in vars(actor.stages).items()}
    gas, vaults = _gas_per_vault(node, _sent_hashes(keeper, head.number))
    return Sample(
        1000 * (sends[0] - t0) if sends else None,
        1000 * (sends[-1] - t0) if sends else None,
        Counter(m for _, m in seen),
        gas,
        stages,
        vaults,
        [(1000 * (t - t0), m) for t, m in seen if t <= done],
    )


def _sent_hashes(keeper: Keeper, block: int) -> list[str]:
    from keeper.store import JournalState, TxKind

    # what reached the node (a refused or never-sent entry has a hash but no transaction)
    entries = keeper.store.entries_in([JournalState.SENT, JournalState.MINED], None)
    return [
        str(e.tx_hash)
        for e in entries
        if e.kind == TxKind.REBALANCE and e.tx_hash and e.payload.get("block") == block
    ]


# --- the naive keeper ----------------------------------------------------------------------------


@dataclass
class Naive:
    """One vault at a time: read, quote every tier, estimate, sign, send."""

    w3: AsyncWeb3[Any]
    manifest: dict[str, Any]
    vaults: list[str]
    costs: CostConfig
    account: Any = field(default_factory=lambda: Account.from_key(NAIVE_KEY))
    nonce: int | None = None

    async def block(self, recorder: Recorder, node: Web3) -> Sample:
        mine(node)
        t0 = time.monotonic()
        head = block_ref(await self.w3.eth.get_block("latest"))
        states = []
        for v in self.vaults:
            raw = await self.w3.eth.call({"to": v, "data": abi.GET_STATE}, head.number)  # type: ignore[typeddict-item]
            states.append(abi.decode_vault_state(v, bytes(raw)))
        decisions = decide_block(head, head.base_fee_wei, states, {}, self.costs)
        by_vault = {s.address: s for s in states}
        sent: list[str] = []
        for d in decisions:
            if d.action != Action.REBALANCE:
                continue
            spec = size_trade(d, by_vault[d.vault], 30, 60)
            if isinstance(spec, TradeSpec):
                tx = await self._send(spec, head.timestamp)
                if tx:
                    sent.append(tx)
        seen = recorder.since(t0)
        sends = [t for t, m in seen if m == "eth_sendRawTransaction"]
        mine(node)
        gas, vaults = _gas_per_vault(node, sent)
        return Sample(
            1000 * (sends[0] - t0) if sends else None,
            1000 * (sends[-1] - t0) if sends else None,
            Counter(m for _, m in seen),
            gas,
            vaults_sent=vaults,
        )

    async def _send(self, t: TradeSpec, now: int) -> str | None:
        c = self.manifest["contracts"]
        weth, usdc = c["WETH"]["address"], c["USDC"]["address"]
        sell, buy = (weth, usdc) if t.sell_underlying else (usdc, weth)
        best = None
        for fee in (500, 3000):
            data = encode_quote_exact_input_single(sell, buy, t.amount_in, fee)
            try:
                raw = await self.w3.eth.call({"to": c["QuoterV2"]["address"], "data": data})  # type: ignore[typeddict-item]
            except Exception:  # noqa: BLE001 - a tier that cannot fill: the next one
                continue
            q = decode_quote_exact_input_single(fee, t.amount_in, bytes(raw))
            best = q if best is None or q.amount_out > best.amount_out else best
        if best is None:
            return None
        min_out = best.amount_out * 9_940 // 10_000
        router = c["SwapRouter"]["address"]
        swap = encode_exact_input_single(
            sell, buy, best.fee, t.vault, now + 600, t.amount_in, min_out
        )
        trade = Trade(t.sell_underlying, t.amount_in, min_out, t.state.state_nonce, now + 600)
        tx = {
            "from": self.account.address,
            "to": t.vault,
            "data": abi.encode_vault_rebalance(trade, router, swap),
        }
        try:
            gas = await self.w3.eth.estimate_gas(tx)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - the vault refuses this one: skip it
            return None
        if self.nonce is None:
            self.nonce = await self.w3.eth.get_transaction_count(self.account.address)
        block = await self.w3.eth.get_block("latest")
        fee = 2 * int(block["baseFeePerGas"]) + 10**9
        full = {**tx, "gas": gas * 12 // 10, "nonce": self.nonce, "chainId": 31337}
        full |= {"maxFeePerGas": fee, "maxPriorityFeePerGas": 10**9, "type": 2}
        signed = self.account.sign_transaction(full)
        self.nonce += 1
        return str((await self.w3.eth.send_raw_transaction(signed.raw_transaction)).hex())


# --- the run -------------------------------------------------------------------------------------


def allow_keeper(node: Web3, vaults: list[str], who: str) -> None:
    s = Sender(node)
    last = None
    for v in vaults:
        last = s.send(v, abi.function("IOptionsVault", "setKeeper").encode(who, True), 200_000)
    if last:
        s.wait(last)


async def run_size(
    url: str,
    node: Web3,
    driver: MarketDriver,
    manifest: dict[str, Any],
    vaults: list[str],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_proxy(url) as (recorder, proxy),
        running_aggregator(url) as agg_url,
    ):
        settings = load_settings(
            rpc_url=proxy,
            manifest=ROOT / "deployments" / "world.json",
            db_url=f"sqlite:///{tmp}/bench.sqlite",
            private_key=KEEPER_KEY,
            aggregator_url=agg_url,
            log_level="WARNING",
        )
        store = Store(settings.db_url)
        rpc = make_rpc(settings)
        actor = await build_actor(settings, store, rpc)
        keeper = await Keeper.build(settings, store, actor, rpc)
        naive_w3 = AsyncWeb3(AsyncHTTPProvider(proxy, request_kwargs={"timeout": 120}))
        naive = Naive(naive_w3, manifest, vaults, keeper.pipeline.costs)
        try:
            await keeper.pipeline.tick(
                block_ref(await keeper.rpc.call("eth_getBlockByNumber", ["latest", False]))
            )
            for share in args.shares:
                fast, slow = [], []
                for _ in range(args.blocks):
                    refill(node, driver)
                    shift_hedges(node, vaults, SHIFT, share, wait=False)
                    fast.append(await keeper_block(keeper, recorder, node))
                    if len(slow) < args.naive_blocks:
                        refill(node, driver)
                        shift_hedges(node, vaults, SHIFT, share, wait=False)
                        slow.append(await naive.block(recorder, node))
                        mine(node)
                        await keeper.pipeline.tick(
                            block_ref(
                                await keeper.rpc.call("eth_getBlockByNumber", ["latest", False])
                            )
                        )
                        mine(node)  # what it sent for the naive keeper's leftovers
                rows.append(summary(len(vaults), share, fast, slow))
        finally:
            await naive_w3.provider.disconnect()
            await actor.close()
            await keeper.close()
            store.close()
    return rows


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(n: int, share: float, fast: list[Sample], slow: list[Sample]) -> dict[str, Any]:
    def lat(samples: list[Sample], attr: str) -> list[float]:
        return [getattr(s, attr) for s in samples if getattr(s, attr) is not None]

    def calls(samples: list[Sample]) -> dict[str, float]:
        methods = {m for s in samples for m in s.calls}
        return {m: statistics.median(s.calls[m] for s in samples) for m in sorted(methods)}

    def gas(samples: list[Sample]) -> float | None:
        values = lat(samples, "gas_per_vault")
        return statistics.median(values) if values else None

    stages = (
        {k: statistics.median(s.stages[k] for s in fast) for k in fast[0].stages} if fast else {}
    )
    return {
        "vaults": n,
        "share": share,
        "keeper": {
            "p50_ms": statistics.median(lat(fast, "latency_ms"))
            if lat(fast, "latency_ms")
            else None,
            "p95_ms": pct(lat(fast, "latency_ms"), 0.95) if lat(fast, "latency_ms") else None,
            "p50_last_ms": statistics.median(lat(fast, "last_ms"))
            if lat(fast, "last_ms")
            else None,
            "blocks_sent": len(lat(fast, "latency_ms")),
            "blocks": len(fast),
            "vaults_traded": statistics.median(s.vaults_sent for s in fast) if fast else 0,
            "stages_ms": stages,
            "calls": calls(fast),
            "gas_per_vault": gas(fast),
            "timeline": _median_timeline(fast),
        },
        "naive": {
            "p50_ms": statistics.median(lat(slow, "latency_ms"))
            if lat(slow, "latency_ms")
            else None,
            "p50_last_ms": statistics.median(lat(slow, "last_ms"))
            if lat(slow, "last_ms")
            else None,
            "blocks": len(slow),
            "vaults_traded": statistics.median(s.vaults_sent for s in slow) if slow else 0,
            "calls": calls(slow),
            "gas_per_vault": gas(slow),
        },
    }


def _median_timeline(samples: list[Sample]) -> list[tuple[float, str]]:
    """The requests of the block whose latency is the median (for ``--timeline``)."""
    timed = sorted(
        (s for s in samples if s.latency_ms is not None), key=lambda s: s.latency_ms or 0
    )
    return timed[len(timed) // 2].timeline if timed else []


def show(rows: list[dict[str, Any]], timeline: bool = False) -> None:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    head = (
        f"{'vaults':>6} {'share':>5} | {'p50 ms':>7} {'p95 ms':>7} {'last':>6} {'sent':>5} "
        f"{'traded':>6} "
        f"{'gas/vault':>9} {'calls':>5} | {'naive p50 first':>15} {'last':>8} {'gas/vault':>9} "
        f"{'calls':>6} | {'speed-up':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        k, n = r["keeper"], r["naive"]
        speed = (
            f"{n['p50_last_ms'] / k['p50_ms']:.1f}x" if k["p50_ms"] and n["p50_last_ms"] else "-"
        )
        print(
            f"{r['vaults']:>6} {r['share']:>5.0%} | {ms(k['p50_ms']):>7} {ms(k['p95_ms']):>7} "
            f"{ms(k['p50_last_ms']):>6} {k['blocks_sent']:>2}/{k['blocks']:<2} "
            f"{k['vaults_traded']:>6.0f} "
            f"{ms(k['gas_per_vault']):>9} {sum(k['calls'].values()):>5.0f} | "
            f"{ms(n['p50_ms']):>15} {ms(n['p50_last_ms']):>8} {ms(n['gas_per_vault']):>9} "
            f"{sum(n['calls'].values()):>6.0f} | {speed:>8}"
        )
    for r in rows:
        k = r["keeper"]
        print(f"\n{r['vaults']} vaults, {r['share']:.0%} out of band:")
        print(
            "  keeper stages (p50 ms): "
            + ", ".join(f"{s} {v:.1f}" for s, v in k["stages_ms"].items())
        )
        print(
            "  keeper calls per block: " + ", ".join(f"{m} {c:.0f}" for m, c in k["calls"].items())
        )
        print(
            "  naive calls per block:  "
            + ", ".join(f"{m} {c:.0f}" for m, c in r["naive"]["calls"].items())
        )
        if timeline:
            print("  the median block's requests (ms after the head, method):")
            for at, method in k["timeline"]:
                print(f"    {at:7.1f} {method}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--shares", default="0.1,1.0")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--naive-blocks", type=int, default=3)
    parser.add_argument("--log", type=Path, help="the keeper's log (INFO) goes to this file")
    parser.add_argument("--profile", type=Path, help="cProfile of the measured ticks (pstats)")
    parser.add_argument(
        "--timeline", action="store_true", help="print the median block's requests in time order"
    )
    args = parser.parse_args()
    global PROFILER
    if args.profile:
        PROFILER = cProfile.Profile()
    keeper_log = logging.getLogger("keeper")
    keeper_log.propagate = False  # measured, not narrated
    # (its verification of each hedge reports a miss every block: the benchmark pushes the
    # vaults out of their bands again before the next head)
    keeper_log.addHandler(logging.NullHandler())
    if args.log:
        handler = logging.FileHandler(args.log)
        handler.setFormatter(
            logging.Formatter("%(name)s %(message)s %(fields)s", defaults={"fields": ""})
        )
        keeper_log.addHandler(handler)
        keeper_log.setLevel(logging.INFO)
    args.shares = [float(s) for s in args.shares.split(",")]
    sizes = sorted(int(s) for s in args.sizes.split(","))
    manifest = json.loads((ROOT / "deployments" / "world.json").read_text())
    if not STATE.exists():
        sys.exit("no saved world: run `make world` first")
    port = free_port()
    rows: list[dict[str, Any]] = []
    # One size: its vaults as an earlier run deployed and kept them (the keeper reads every
    # registered vault, so several sizes deploy one after the other on one node instead).
    kept, listed = kept_state(sizes[0], STATE)
    start = kept if len(sizes) == 1 and kept.exists() and listed.exists() else STATE
    try:
        with running_anvil(start, port, *ANVIL_ARGS, ready_timeout=120):
            url = f"http://127.0.0.1:{port}"
            node = Web3(HTTPProvider(url, request_kwargs={"timeout": 300}))
            naive = Account.from_key(NAIVE_KEY).address
            if len(sizes) == 1:
                vaults = world_with(node, sizes[0], STATE, MANIFEST)
            else:
                vaults = [v["address"] for v in manifest["vaults"]]
            allow_keeper(node, vaults, naive)
            for size in sizes:
                if size > len(vaults):
                    t0 = time.perf_counter()
                    extra = deploy_vaults(node, manifest, size - len(vaults))
                    allow_keeper(node, extra, naive)
                    vaults += extra
                    print(f"{len(extra)} vaults deployed in {time.perf_counter() - t0:.1f}s")
                node.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
                driver = MarketDriver(
                    node, load_manifest(MANIFEST), node.eth.accounts[0], node.eth.accounts[3], True
                )
                driver.fund_trader(5_000 * WAD, 20_000_000 * 10**6)
                done = asyncio.run(run_size(url, node, driver, manifest, vaults[:size], args))
                show(done, args.timeline)  # as each size finishes; the whole table again at the end
                rows += done
                node.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    except AnvilStartError as exc:
        sys.exit(str(exc))
    show(rows)
    if PROFILER is not None:
        PROFILER.dump_stats(args.profile)


if __name__ == "__main__":
    main()
