"""The JSON-RPC transport against a local anvil: concurrent reads (RpcClient vs web3's
AsyncHTTPProvider) and failover latency (an endpoint refusing connections, one that accepts
and never answers). Prints numbers; asserts nothing.

    python scripts/bench_rpc.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_utils.address import to_checksum_address  # noqa: E402
from web3 import AsyncHTTPProvider, AsyncWeb3  # noqa: E402

from keeper.chain.retry import RetryPolicy  # noqa: E402
from keeper.chain.rpc import RpcClient, RpcConfig  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def concurrent(url: str, n: int) -> tuple[float, float]:
    rpc = RpcClient(RpcConfig(urls=(url,), max_connections=64))
    w3 = AsyncWeb3(AsyncHTTPProvider(url, exception_retry_configuration=None))
    try:
        await rpc.call("eth_blockNumber", [])
        await w3.eth.block_number
        t0 = time.perf_counter()
        await asyncio.gather(
            *(rpc.call("eth_getBalance", [f"0x{i:040x}", "latest"]) for i in range(n))
        )
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        await asyncio.gather(
            *(w3.eth.get_balance(to_checksum_address(f"0x{i:040x}")) for i in range(n))
        )
        theirs = time.perf_counter() - t0
    finally:
        await rpc.close()
        await w3.provider.disconnect()
    return ours, theirs


async def failover(url: str, dead: str, timeout: float) -> tuple[float, list[float]]:
    """The first read through a bad first endpoint, then the next reads (it is cooled down)."""
    rpc = RpcClient(
        RpcConfig(urls=(dead, url), timeout_seconds=timeout, policy=RetryPolicy(attempts=2))
    )
    try:
        t0 = time.perf_counter()
        await rpc.call("eth_blockNumber", [])
        first = time.perf_counter() - t0
        later = []
        for _ in range(20):
            t0 = time.perf_counter()
            await rpc.call("eth_blockNumber", [])
            later.append(time.perf_counter() - t0)
    finally:
        await rpc.close()
    return first, later


async def silent_server() -> tuple[asyncio.Server, str]:
    async def swallow(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await reader.read(-1)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def main(requests: int) -> None:
    binary = shutil.which("anvil") or str(ROOT / ".venv/bin/anvil")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                await asyncio.sleep(0.05)
        ours, theirs = await concurrent(url, requests)
        print(
            f"{requests} concurrent eth_getBalance: RpcClient {ours:.2f}s "
            f"({requests / ours:.0f}/s), web3 AsyncHTTPProvider {theirs:.2f}s "
            f"({requests / theirs:.0f}/s)"
        )
        first, later = await failover(url, f"http://127.0.0.1:{free_port()}", 2.0)
        print(
            f"first endpoint refuses connections: first read {1000 * first:.1f} ms, "
            f"then median {1000 * statistics.median(later):.2f} ms (it sits out its cool-down)"
        )
        server, hung = await silent_server()
        try:
            first, later = await failover(url, hung, 2.0)
        finally:
            server.close()
        print(
            f"first endpoint accepts and never answers (timeout 2 s): first read "
            f"{1000 * first:.0f} ms, then median {1000 * statistics.median(later):.2f} ms"
        )
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    asyncio.run(main(parser.parse_args().requests))
