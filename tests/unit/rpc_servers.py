"""Small JSON-RPC servers on 127.0.0.1 that misbehave the way real providers do (rate limits,
keep-alive connections closed under a request, JSON-RPC errors, a websocket that goes
silent), for the transport's tests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
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


BATCHES_REFUSED = {"code": -32600, "message": "batch requests are not supported"}


@asynccontextmanager
async def jsonrpc_server(handler: Handler, refuse_batches: bool = False) -> AsyncIterator[str]:
    """Serve ``handler`` (one JSON-RPC request -> reply dict or raw HTTP response); its URL.
    ``refuse_batches``: a batch is answered with one error, as by providers without them."""

    async def endpoint(request: web.Request) -> web.Response:
        body = await request.json()
        if isinstance(body, list) and refuse_batches:
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": BATCHES_REFUSED})
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


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


@asynccontextmanager
async def silent_websocket_server() -> AsyncIterator[str]:
    """A websocket JSON-RPC server that completes the handshake (RFC 6455), answers the
    requests up to ``eth_subscribe``, then reads everything and never writes again (not even
    the closing handshake): a node behind a blackhole. Yields its ``ws://`` URL."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _ws_handshake(reader, writer)
            while True:
                request = json.loads(await _ws_read_frame(reader))
                reply = {"jsonrpc": "2.0", "id": request["id"], "result": "0x1"}
                _ws_write_text(writer, json.dumps(reply).encode())
                await writer.drain()
                if request["method"] == "eth_subscribe":
                    break
            while await reader.read(65536):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        server.close()


async def _ws_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    key = next(
        line.partition(":")[2].strip()
        for line in head.split("\r\n")
        if line.lower().startswith("sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
    )
    await writer.drain()


async def _ws_read_frame(reader: asyncio.StreamReader) -> bytes:
    """One (masked, unfragmented) client frame's payload (RFC 6455 section 5.2)."""
    _, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
    data = await reader.readexactly(length)
    return bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))


def _ws_write_text(writer: asyncio.StreamWriter, payload: bytes) -> None:
    size = len(payload)
    header = bytes([0x81, size]) if size < 126 else bytes([0x81, 126]) + size.to_bytes(2, "big")
    writer.write(header + payload)
