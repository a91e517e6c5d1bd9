"""``/metrics`` (Prometheus) and ``/health`` for the long-lived service, on aiohttp.

``/health`` answers 200 while a block was processed within ``KEEPER_HEALTH_MAX_AGE_SECONDS``
(or while the instance stands by for the leader lease) and 503 otherwise (a stalled head
source, a node that stopped answering, a wedged tick), with the role, the last block and the
seconds since progress as JSON: what a liveness probe or an alert needs. Off unless
``KEEPER_METRICS_PORT`` is set; binds ``KEEPER_METRICS_HOST`` (loopback by default).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from keeper.errors import ConfigError
from keeper.metrics import Metrics

log = logging.getLogger("keeper.monitor")


def make_app(
    metrics: Metrics, max_age_seconds: float, clock: Callable[[], float] = time.time
) -> web.Application:
    """The page is written by ``prometheus-client`` from the metrics' registry."""

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_page(_: web.Request) -> web.Response:
        health = metrics.health(clock(), max_age_seconds)
        return web.json_response(
            {
                "healthy": health.healthy,
                "role": health.role,
                "last_block": health.last_block,
                "seconds_since_progress": round(health.seconds_since_progress, 3),
            },
            status=200 if health.healthy else 503,
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/health", health_page)
    return app


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app``; ``ConfigError`` naming the setting when the address cannot be bound."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"KEEPER_METRICS_PORT: cannot listen on {host}:{port}: {exc}") from exc
    log.info("metrics and health on http://%s:%d/metrics, /health", host, port)
    return runner
