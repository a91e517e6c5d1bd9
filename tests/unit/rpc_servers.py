"""Small JSON-RPC servers on 127.0.0.1 that misbehave the way real providers do (rate limits,
keep-alive connections closed under a request, JSON-RPC errors), for the transport's tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

Handler = Callable[[dict[str, Any]], dict[str, Any] | web.Response]


def ok(request: dict[str, Any], result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def error(request: dict[str, Any], code: int, message: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": request["id"], "error": body}


@asynccontextmanager
async def jsonrpc_server(handler: Handler) -> AsyncIterator[str]:
    """Serve ``handler`` (one JSON-RPC request -> reply dict or raw HTTP response); its URL."""

    async def endpoint(request: web.Request) -> web.Response:
        body = await request.json()
        if isinstance(body, list):
            replies = [handler(item) for item in body]
            return web.json_response([r for r in reversed(replies) if isinstance(r, dict)])
        reply = handler(body)
        return reply if isinstance(reply, web.Response) else web.json_response(reply)

    app = web.Application()
    app.router.add_post("/", endpoint)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def closing_keepalive_server(result: Any) -> AsyncIterator[tuple[str, list[int]]]:
    """An HTTP/1.1 server that answers the first request of each connection with
    ``Connection: keep-alive`` and then closes the connection when the next request arrives,
    without answering (what a provider's load balancer does to an idle keep-alive socket).
    Yields the URL and the number of requests answered per connection."""
    answered: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = _content_length(head)
                body = json.loads(await reader.readexactly(length))
                if count == 1:
                    break  # the second request on this connection: hang up
                reply = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": result})
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Connection: keep-alive\r\n"
                    + f"Content-Length: {len(reply)}\r\n\r\n{reply}".encode()
                )
                await writer.drain()
                count += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            answered.append(count)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/", answered
    finally:
        server.close()
        await server.wait_closed()


def _content_length(head: bytes) -> int:
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value)
    return 0
