"""The operator's numbers: what a tick adds to the metrics, /metrics and /health over HTTP."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from keeper import metrics, monitor
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


def samples(page: bytes) -> dict[str, float]:
    """Every sample of a Prometheus text page, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.name + _labels(sample.labels): sample.value
        for family in text_string_to_metric_families(page.decode())
        for sample in family.samples
    }


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def test_ticks_add_up() -> None:
    now = [START]
    m = Metrics(started_at=START, clock=lambda: now[0])
    m.count_in_flight(lambda: 1)
    m.observe_tick(report(10, Action.HOLD, Action.REBALANCE), 0.25, now=START + 5)
    m.observe_tick(report(11, Action.SKIP, Action.HOLD, dropped=2), 0.5, now=START + 17)
    m.observe_failure("retryable")
    now[0] = START + 12 * 11 + 3
    got = samples(m.render())
    assert got["keeper_ticks_total"] == 2
    assert got["keeper_tick_seconds_sum"] == 0.75 and got["keeper_tick_seconds_count"] == 2
    assert got['keeper_tick_seconds_bucket{le="0.25"}'] == 1  # a histogram: quantiles work
    assert got['keeper_decisions_total{action="hold"}'] == 2
    assert got['keeper_decisions_total{action="skip"}'] == 1
    assert got['keeper_tick_failures_total{kind="retryable"}'] == 1
    assert got["keeper_reorgs_total"] == 1 and got["keeper_dropped_blocks_total"] == 2
    assert got["keeper_read_rpc_calls_total"] == 2
    assert got["keeper_last_block_number"] == 11
    assert got["keeper_last_block_age_seconds"] == 3
    assert got["keeper_transactions_in_flight"] == 1
    assert got["keeper_seconds_since_progress"] == 12 * 11 + 3 - 17
    assert "process_cpu_seconds_total" in got and "process_resident_memory_bytes" in got
    assert any(k.startswith("keeper_build_info") for k in got)


def test_a_rebalance_deferred_block_after_block_is_not_counted_as_a_decision_each_time() -> None:
    """A vault out of band with its rebalance in flight is decided REBALANCE every block but
    sent once: 12 blocks of it are 1 rebalance decision and 11 deferred ones."""
    m = Metrics(started_at=START)
    vault = "0x" + "00" * 20
    for n in range(12):
        tick = report(100 + n, Action.REBALANCE)
        acted = frozenset({vault}) if n == 0 else frozenset()
        m.observe_tick(replace(tick, acted=acted), 0.1, now=START + n)
    got = samples(m.render())
    assert got['keeper_decisions_total{action="rebalance"}'] == 1
    assert got["keeper_decisions_deferred_total"] == 11
    assert got[f'keeper_vault_last_rebalance_block{{vault="{vault}"}}'] == 100


def test_per_vault_series_count_blocks_out_of_band_and_go_with_the_vault() -> None:
    m = Metrics(started_at=START)
    out = Decision("0xa", 1, "0x1", Action.REBALANCE, "band", band=0.5, deviation=-0.8)
    inside = replace(out, deviation=0.1, action=Action.HOLD)
    other = replace(inside, vault="0xb")
    for n, decisions in enumerate([(out, other), (out, other), (out, other)]):
        m.observe_tick(replace(report(n + 1), decisions=decisions), 0.1, now=START)
    got = samples(m.render())
    assert got['keeper_vault_out_of_band_blocks{vault="0xa"}'] == 3
    assert got['keeper_vault_deviation{vault="0xa"}'] == -0.8
    assert got['keeper_vault_band{vault="0xa"}'] == 0.5
    m.observe_tick(replace(report(4), decisions=(inside,)), 0.1, now=START)
    got = samples(m.render())
    assert got['keeper_vault_out_of_band_blocks{vault="0xa"}'] == 0
    assert not any('vault="0xb"' in k for k in got)  # 0xb left the registry


def test_the_sending_side_feeds_the_installed_metrics_through_module_functions() -> None:
    m = Metrics(started_at=START).install()
    m.head_taken()
    metrics.tx_broadcast("rebalance")
    metrics.tx_outcome("rebalance", "mined")
    metrics.tx_outcome("cancel", "cancelled")
    metrics.tx_mined("rebalance", 150_000, 20 * 10**9, sent_at_block=10, mined_at_block=12)
    metrics.balance(3 * 10**17)
    with pytest.raises(ValueError, match="unknown transaction outcome"):
        metrics.tx_outcome("rebalance", "lost")
    got = samples(m.render())
    assert got['keeper_transactions_total{kind="rebalance",outcome="sent"}'] == 1
    assert got['keeper_transactions_total{kind="rebalance",outcome="mined"}'] == 1
    assert got['keeper_transactions_total{kind="cancel",outcome="cancelled"}'] == 1
    assert got["keeper_head_to_broadcast_seconds_count"] == 1
    assert got['keeper_gas_used_total{kind="rebalance"}'] == 150_000
    assert got['keeper_fees_spent_eth_total{kind="rebalance"}'] == pytest.approx(0.003)
    assert got['keeper_inclusion_delay_blocks_bucket{le="2.0"}'] == 1
    assert got["keeper_balance_eth"] == pytest.approx(0.3)


def test_rpc_and_lease_series() -> None:
    m = Metrics(started_at=START)
    m.rpc_request("a:80", "eth_call", 0.01, None)
    m.rpc_request("a:80", "eth_call", 0.02, "RpcTimeout")
    m.rpc_endpoint("a:80", 120, "lagging")
    m.lease_state(False, 3)
    m.lease_state(True, 4)
    got = samples(m.render())
    assert got['keeper_rpc_requests_total{endpoint="a:80",method="eth_call"}'] == 2
    assert got['keeper_rpc_errors_total{endpoint="a:80",error="RpcTimeout",method="eth_call"}'] == 1
    assert got['keeper_rpc_endpoint_state{endpoint="a:80",state="lagging"}'] == 1
    assert got['keeper_rpc_endpoint_state{endpoint="a:80",state="healthy"}'] == 0
    assert got['keeper_rpc_head{endpoint="a:80"}'] == 120
    assert got["keeper_lease_leader"] == 1 and got["keeper_lease_epoch"] == 4
    assert got['keeper_lease_transitions_total{to="standby"}'] == 1
    assert got['keeper_lease_transitions_total{to="leader"}'] == 1


def test_nothing_processed_yet_means_no_made_up_block() -> None:
    got = samples(Metrics(started_at=START).render())
    assert "keeper_ticks_total" in got and "keeper_last_block_number" not in got


def test_health_counts_from_the_start_then_from_the_last_block() -> None:
    m = Metrics(started_at=START)
    assert m.health(START + 100, 120).healthy
    assert not m.health(START + 121, 120).healthy
    m.observe_tick(report(10), 0.1, now=START + 200)
    health = m.health(START + 250, 120)
    assert health.healthy and health.last_block == 10 and health.seconds_since_progress == 50


def test_metrics_and_health_over_http() -> None:
    now = [START + 10]
    m = Metrics(started_at=START, clock=lambda: now[0])
    m.count_in_flight(lambda: 2)
    app = monitor.make_app(m, max_age_seconds=60, clock=lambda: now[0])

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
    assert status == 200 and content_type.startswith("text/plain; version=1.0.0")
    assert "keeper_ticks_total 0.0" in body
    assert "keeper_transactions_in_flight 2" in body  # counted when the page is asked for
    assert ok == 200 and stale == 503
    assert verdict == {
        "healthy": False,
        "role": "starting",
        "last_block": None,
        "seconds_since_progress": 61.0,
    }


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
