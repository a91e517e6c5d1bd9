"""Run the service in a background thread with its own event loop (tests, the demo)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from aiohttp import web

from keeper.aggsvc.app import create_app
from keeper.aggsvc.config import ServiceConfig
from keeper.errors import ConfigError


@dataclass
class BackgroundService:
    """A running service: ``url`` to call it, ``stop()`` to shut it down."""

    url: str
    _loop: asyncio.AbstractEventLoop
    _runner: web.AppRunner
    _thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        future.result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundService:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_in_background(
    config: ServiceConfig, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 10.0
) -> BackgroundService:
    """Start the service on ``host:port`` (0 picks a free port); returns once it listens."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="aggsvc", daemon=True)
    thread.start()
    runner = web.AppRunner(create_app(config), handle_signals=False, shutdown_timeout=1.0)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        return f"http://{bound_host}:{bound_port}"

    try:
        url = asyncio.run_coroutine_threadsafe(start(), loop).result(startup_timeout)
    except OSError as exc:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(startup_timeout)
        raise ConfigError(f"aggregator service cannot listen on {host}:{port}: {exc}") from exc
    return BackgroundService(url, loop, runner, thread)
