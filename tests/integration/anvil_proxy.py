"""A plain anvil of its own for transport tests, and JSON-RPC proxies in front of it
(127.0.0.1 only) that can be killed, made to lag, or made to return errors."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rpc(url: str, method: str, params: list[Any] | None = None) -> Any:
    """A blocking JSON-RPC call (test set-up only)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(
        url, body.encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["result"]


@contextmanager
def anvil(*args: str) -> Iterator[str]:
    """A fresh anvil on a free port (mining on demand); its URL. Killed on exit."""
    binary = shutil.which("anvil")
    assert binary is not None, "anvil is not on PATH (run tools/setup.sh)"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--host", "127.0.0.1", "--silent", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                rpc(url, "eth_chainId")
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


class Proxy:
    """Forwards JSON-RPC to ``upstream``; ``mode`` is ``pass``, ``error`` (HTTP 503),
    ``rate_limit`` (HTTP 429),
    ``rpc_error`` (JSON-RPC -32005 limit exceeded) or ``lag`` (a node ``lag`` blocks behind:
    its latest block is older, and it has no block newer than that)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.lag = 0
        self.forwarded = 0
        self.methods: Counter[str] = Counter()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = free_port()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self._port).start()
        self.url = f"http://127.0.0.1:{self._port}/"

    async def kill(self) -> None:
        """Stop listening: the port is closed (connection refused)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.mode == "error":
            return web.Response(status=503, text="upstream unavailable")
        if self.mode == "rate_limit":
            return web.Response(status=429, text="too many requests")
        if isinstance(body, list):
            return web.json_response([await self._one(item) for item in body])
        return web.json_response(await self._one(body))

    async def _one(self, item: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "rpc_error":
            return {
                "jsonrpc": "2.0",
                "id": item["id"],
                "error": {"code": -32005, "message": "limit exceeded"},
            }
        if self.mode == "lag":
            lagged = await self._lagged(item)
            if lagged is not None:
                return lagged
        self.forwarded += 1
        self.methods[item["method"]] += 1
        return await self._forward(item)

    async def _lagged(self, item: dict[str, Any]) -> dict[str, Any] | None:
        method, params = item["method"], item.get("params", [])
        head = int(
            (await self._forward({**item, "method": "eth_blockNumber", "params": []}))["result"], 16
        )
        visible = max(head - self.lag, 0)
        if method == "eth_blockNumber":
            return {"jsonrpc": "2.0", "id": item["id"], "result": hex(visible)}
        if method == "eth_getBlockByNumber" and params and params[0] == "latest":
            return await self._forward({**item, "params": [hex(visible), *params[1:]]})
        if method in ("eth_call", "eth_getBlockByHash") and len(params) >= 1:
            tag = params[-1] if method == "eth_call" else params[0]
            if isinstance(tag, str) and len(tag) == 66:
                block = (
                    await self._forward(
                        {**item, "method": "eth_getBlockByHash", "params": [tag, False]}
                    )
                )["result"]
                if block is None or int(block["number"], 16) > visible:
                    return {
                        "jsonrpc": "2.0",
                        "id": item["id"],
                        "error": {"code": -32000, "message": "header not found"},
                    }
        return None

    async def _forward(self, item: dict[str, Any]) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(self.upstream, json=item) as response:
            reply: dict[str, Any] = await response.json()
            return reply
