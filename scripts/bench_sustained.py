"""Benchmark: the real ``keeper run`` process under a full book for many blocks, then SIGTERM.

Starts anvil from the saved world with N vaults (deployed once, then kept as a state file in
``.world/`` for later runs), the recording JSON-RPC proxy and the local aggregator of
``scripts/bench_latency.py``, and the keeper as an operator runs it: ``keeper run``
in a process of its own (heads over the node's websocket, every request through the proxy,
``/health`` on its metrics port). Per block, for ``--blocks`` blocks:

1. time moves on and the pools come back to the oracle (one block: buckets refill);
2. EVERY vault is pushed out of its band, half up and half down (the direction alternates
   block by block, so no vault drains), and one block is mined: the head;
3. the proxy's first ``eth_sendRawTransaction`` after the head is the keeper's broadcast;
   once the keeper is quiet its transactions are mined (a block of their own, before the
   oracle's next round, which would make them stale); ``/health`` is asked once.

Then one more full head, and SIGTERM ``--stop-after`` seconds after it (in the middle of that
block's work): how long until the process has exited, and its exit code. Prints the share of
blocks with a settlement sent within ``--within`` seconds, p50 / p95 / max head -> broadcast,
``/health`` answers, and the stop time.

    python scripts/bench_sustained.py [--vaults 1000] [--blocks 100] [--within 1.0]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_latency import (  # noqa: E402
    ANVIL_ARGS,
    KEEPER_KEY,
    MANIFEST,
    REFILL_SECONDS,
    SHIFT,
    STATE,
    WAD,
    Recorder,
    mine,
    refill,
    running_aggregator,
    running_proxy,
)
from bench_world import kept_state, shift_hedges, world_with  # noqa: E402
from web3 import HTTPProvider, Web3  # noqa: E402

from world.manifest import load_manifest  # noqa: E402
from world.market import MarketDriver  # noqa: E402
from world.node import AnvilStartError, free_port, running_anvil  # noqa: E402


def start_keeper(proxy: str, ws: str, aggregator: str, db: str, metrics_port: int) -> Any:
    env = {
        **os.environ,
        "KEEPER_RPC_URL": proxy,
        "KEEPER_WS_URL": ws,
        "KEEPER_MANIFEST": str(MANIFEST),
        "KEEPER_DB_URL": db,
        "KEEPER_PRIVATE_KEY": KEEPER_KEY,
        "KEEPER_AGGREGATOR_URL": aggregator,
        "KEEPER_METRICS_PORT": str(metrics_port),
        "KEEPER_LOG_LEVEL": "WARNING",
        # Each block moves the clock REFILL_SECONDS (900 s: the vaults' buckets refill), so
        # a transaction the keeper sent at one block and that is mined after the next jump
        # would pass the default 600 s deadline: a chain of 12 s blocks never does that.
        "KEEPER_DEADLINE_SECONDS": str(4 * REFILL_SECONDS),
    }
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "keeper"), "run"],  # the console script
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(Path(tempfile.gettempdir()) / "bench_sustained_keeper.log", "w"),
    )


def health(port: int) -> tuple[int, float]:
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            status = reply.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0
    return status, time.monotonic() - t0


def ticks(port: int) -> float:
    """Blocks the keeper has processed (``keeper_ticks_total`` on its ``/metrics``)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return -1.0
    for line in text.splitlines():
        if line.startswith("keeper_ticks_total "):
            return float(line.split()[1])
    return 0.0


def processed(port: int, target: float, limit: float = 60.0) -> None:
    """Until the keeper has processed ``target`` blocks (or a newer head superseded one)."""
    deadline = time.monotonic() + limit
    while ticks(port) < target and time.monotonic() < deadline:
        time.sleep(0.02)


def quiet(recorder: Recorder, since: float, gap: float = 0.3, limit: float = 5.0) -> None:
    """Until the keeper has sent nothing through the proxy for ``gap`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        seen = recorder.since(since)
        if not seen or time.monotonic() - seen[-1][0] >= gap:
            return
        time.sleep(0.05)


def first_send(recorder: Recorder, before: float, t0: float, wait: float) -> float | None:
    """Seconds from the head (``t0``, when the node had mined it) to the keeper's first
    broadcast, looking from ``before`` the mining began; None if none within ``wait``."""
    deadline = t0 + wait
    while time.monotonic() < deadline:
        sends = [t for t, m in recorder.since(before) if m == "eth_sendRawTransaction"]
        if sends:
            return max(sends[0] - t0, 0.0)
        time.sleep(0.01)
    return None


def pairs_swapped(vaults: list[str]) -> list[str]:
    out = []
    for a, b in zip(vaults[0::2], vaults[1::2], strict=False):
        out += [b, a]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    kept, listed = kept_state(args.vaults, STATE)
    state = kept if kept.exists() and listed.exists() else STATE
    with running_anvil(state, port, *ANVIL_ARGS, ready_timeout=120):
        url, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        node = Web3(HTTPProvider(url, request_kwargs={"timeout": 300}))
        vaults = world_with(node, args.vaults, STATE, MANIFEST)
        node.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
        driver = MarketDriver(
            node, load_manifest(MANIFEST), node.eth.accounts[0], node.eth.accounts[3], True
        )
        driver.fund_trader(50_000 * WAD, 200_000_000 * 10**6)
        metrics_port = free_port()
        with (
            tempfile.TemporaryDirectory() as tmp,
            running_proxy(url) as (recorder, proxy),
            running_aggregator(url) as agg,
        ):
            keeper = start_keeper(proxy, ws, agg, f"sqlite:///{tmp}/k.sqlite", metrics_port)
            latencies: list[float | None] = []
            probes: list[tuple[int, float]] = []
            try:
                time.sleep(3)  # the keeper starts, reconciles, subscribes
                processed(metrics_port, 1)  # and acts on the first head
                quiet(recorder, time.monotonic(), gap=1.0, limit=60)
                mine(node)
                for i in range(args.blocks):
                    seen = ticks(metrics_port)
                    refill(node, driver)
                    processed(metrics_port, seen + 1)
                    order = vaults if i % 2 == 0 else pairs_swapped(vaults)
                    shift_hedges(node, order, SHIFT, 1.0, wait=False)
                    seen = ticks(metrics_port)
                    before = time.monotonic()
                    mine(node)
                    t0 = time.monotonic()  # the head exists (as in bench_latency)
                    latencies.append(first_send(recorder, before, t0, args.within * 3))
                    processed(metrics_port, seen + 1)  # its tick is over: all of it sent
                    seen = ticks(metrics_port)
                    mine(node)  # the keeper's transactions, before the oracle's next round
                    processed(metrics_port, seen + 1)
                    probes.append(health(metrics_port))
                    if keeper.poll() is not None:
                        raise SystemExit(f"the keeper exited early with {keeper.returncode}")
                # the stop comes in the middle of a full block's work
                refill(node, driver)
                shift_hedges(node, vaults, SHIFT, 1.0, wait=False)
                mine(node)
                time.sleep(args.stop_after)
            finally:
                t_stop = time.monotonic()
                keeper.send_signal(signal.SIGTERM)
                try:
                    code = keeper.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    keeper.kill()
                    code = None
                stopped = time.monotonic() - t_stop
    sent = [x for x in latencies if x is not None]
    return {
        "vaults": len(vaults),
        "blocks": len(latencies),
        "within": sum(1 for x in sent if x <= args.within),
        "p50_ms": 1000 * statistics.median(sent) if sent else None,
        "p95_ms": 1000 * sorted(sent)[int(0.95 * (len(sent) - 1))] if sent else None,
        "max_ms": 1000 * max(sent) if sent else None,
        "health_ok": sum(1 for s, _ in probes if s == 200),
        "health_max_ms": 1000 * max((t for _, t in probes), default=0.0),
        "sigterm_exit_seconds": stopped,
        "exit_code": code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vaults", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--within", type=float, default=1.0, help="seconds, head -> broadcast")
    parser.add_argument(
        "--stop-after", type=float, default=0.1, help="SIGTERM this long after a last full head"
    )
    args = parser.parse_args()
    if not STATE.exists():
        sys.exit("no saved world: run `make world` first")
    try:
        r = run(args)
    except AnvilStartError as exc:
        sys.exit(str(exc))
    ms = "{:.1f}".format
    print(
        f"{r['vaults']} vaults, every one out of band each block, {r['blocks']} blocks: "
        f"a settlement sent within {args.within:g}s in {r['within']}/{r['blocks']} blocks; "
        f"head -> broadcast p50 {ms(r['p50_ms'] or 0)} ms, p95 {ms(r['p95_ms'] or 0)} ms, "
        f"max {ms(r['max_ms'] or 0)} ms"
    )
    print(
        f"/health answered 200 in {r['health_ok']}/{r['blocks']} probes (slowest "
        f"{ms(r['health_max_ms'])} ms); SIGTERM mid-block -> exit in "
        f"{r['sigterm_exit_seconds']:.2f}s, "
        f"exit code {r['exit_code']}"
    )


if __name__ == "__main__":
    main()
