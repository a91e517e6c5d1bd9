"""The operator's numbers: what a tick adds to the metrics, /metrics and /health over HTTP."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from keeper import monitor
from keeper.core.chaintrack import ChainUpdate
from keeper.core.types import Action, BlockRef, Decision
from keeper.errors import ConfigError
from keeper.metrics import Metrics
from keeper.pipeline import TickReport

START = 1_800_000_000.0


def block(number: int) -> BlockRef:
    return BlockRef(number, f"0x{number:064x}", f"0x{number - 1:064x}", int(START) + 12 * number)


def report(number: int, *actions: Action, dropped: int = 0) -> TickReport:
    decisions = tuple(
        Decision(
            vault=f"0x{i:040x}",
            block_number=number,
            block_hash=block(number).hash,
            action=a,
            reason="test",
        )
        for i, a in enumerate(actions)
    )
    chain = ChainUpdate(
        added=(block(number),), dropped=tuple(block(90 + i) for i in range(dropped))
    )
    return TickReport(block(number), decisions, frozenset(), rpc_calls=1, chain=chain)


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_ticks_add_up() -> None:
    m = Metrics(started_at=START)
    m.observe_tick(report(10, Action.HOLD, Action.REBALANCE), 0.25, now=START + 5)
    m.observe_tick(report(11, Action.SKIP, Action.HOLD, dropped=2), 0.5, now=START + 17)
    m.observe_failure("retryable")
    got = samples(m.render(now=START + 12 * 11 + 3, transactions_in_flight=1))
    assert got["keeper_ticks_total"] == 2
    assert got["keeper_tick_seconds_sum"] == 0.75 and got["keeper_tick_seconds_count"] == 2
    assert got['keeper_decisions_total{action="hold"}'] == 2
    assert got['keeper_decisions_total{action="rebalance"}'] == 1
    assert got['keeper_decisions_total{action="skip"}'] == 1
    assert got['keeper_tick_failures_total{kind="retryable"}'] == 1
    assert got['keeper_tick_failures_total{kind="fatal"}'] == 0
    assert got["keeper_reorgs_total"] == 1 and got["keeper_dropped_blocks_total"] == 2
    assert got["keeper_read_rpc_calls_total"] == 2
    assert got["keeper_last_block_number"] == 11
    assert got["keeper_last_block_age_seconds"] == 3
    assert got["keeper_transactions_in_flight"] == 1
    assert got["keeper_seconds_since_progress"] == 12 * 11 + 3 - 17


def test_every_family_is_typed_and_described() -> None:
    text = Metrics(started_at=START).render(now=START)
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    described = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert names == described and "keeper_ticks_total" in names
    assert "keeper_last_block_number" not in text  # nothing processed yet: no made-up block


def test_health_counts_from_the_start_then_from_the_last_block() -> None:
    m = Metrics(started_at=START)
    assert m.health(START + 100, 120).healthy
    assert not m.health(START + 121, 120).healthy
    m.observe_tick(report(10), 0.1, now=START + 200)
    health = m.health(START + 250, 120)
    assert health.healthy and health.last_block == 10 and health.seconds_since_progress == 50


def test_metrics_and_health_over_http() -> None:
    m = Metrics(started_at=START)
    now = [START + 10]
    app = monitor.make_app(m, max_age_seconds=60, clock=lambda: now[0], in_flight=lambda: 2)

    async def go() -> list[Any]:
        async with TestClient(TestServer(app)) as client:
            page = await client.get("/metrics")
            body = await page.text()
            ok = await client.get("/health")
            now[0] = START + 61
            stale = await client.get("/health")
            return [
                page.status,
                page.headers["Content-Type"],
                body,
                ok.status,
                stale.status,
                await stale.json(),
            ]

    status, content_type, body, ok, stale, verdict = asyncio.run(go())
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert "keeper_ticks_total 0" in body
    assert "keeper_transactions_in_flight 2" in body  # counted when the page is asked for
    assert ok == 200 and stale == 503
    assert verdict == {"healthy": False, "last_block": None, "seconds_since_progress": 61.0}


def test_a_port_in_use_is_a_config_error_naming_the_setting() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    app = monitor.make_app(Metrics(started_at=START), max_age_seconds=60)
    try:
        with pytest.raises(ConfigError, match="KEEPER_METRICS_PORT"):
            asyncio.run(monitor.start(app, "127.0.0.1", port))
    finally:
        taken.close()
