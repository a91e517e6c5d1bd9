"""What the keeper does, as numbers an operator can alert on (``prometheus-client``).

``Metrics`` owns one registry: process and platform metrics, build info, and the keeper's
families (tick time, blocks, decisions, transactions, gas and fees, balance, per-vault
deviation and band, RPC calls by endpoint, lease). It is fed by the runner after every tick
and by the small module functions below, which the sending side calls without being handed
an object (they go to the ``Metrics`` installed last, by ``Metrics.install``):

* ``tx_outcome(kind, outcome)`` - outcome: ``sent`` / ``mined`` / ``reverted`` / ``replaced``
  / ``cancelled`` / ``dropped`` / ``failed``;
* ``tx_broadcast(kind)`` - at each first broadcast: the head -> broadcast latency;
* ``tx_mined(kind, gas_used, effective_gas_price_wei, sent_at_block, mined_at_block)`` - gas,
  fees spent and the inclusion delay in blocks;
* ``balance(wei)`` - the keeper account's balance.

Exposition: https://prometheus.io/docs/instrumenting/exposition_formats/ (written by the
library). Amounts in wei are converted to ETH (float) only here, at the edge.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from keeper.core.types import Action, Decision

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from keeper.pipeline import TickReport

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series

WEI_PER_ETH = 10**18
TX_OUTCOMES = ("sent", "mined", "reverted", "replaced", "cancelled", "dropped", "failed")
RPC_STATES = ("healthy", "lagging", "down")


def package_version() -> str:
    try:
        return version("optkeeper")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Health:
    """Healthy while a block was processed within ``max_age_seconds`` (or since the start),
    or while this instance stands by for the leader lease."""

    healthy: bool
    last_block: int | None
    seconds_since_progress: float
    role: str


class Metrics:
    """Every metric family of one keeper process, in its own registry."""

    def __init__(self, started_at: float, clock: Callable[[], float] = time.time) -> None:
        self.started_at = started_at
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        self.last_block: int | None = None
        self.last_block_timestamp: int | None = None
        self.last_progress_at: float | None = None
        self.role = "starting"
        self._head_seen_at: float | None = None  # perf_counter when the head was taken
        self._out_of_band: dict[str, int] = {}
        self._in_flight: Callable[[], int] = lambda: 0
        self._define()
        self.registry.register(_Live(self))

    def _define(self) -> None:
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("keeper_build", "Version of the keeper", registry=r).info(
            {"version": package_version(), "python": platform.python_version()}
        )
        self.ticks = Counter("keeper_ticks", "Blocks processed", registry=r)
        self.tick_seconds = Histogram(
            "keeper_tick_seconds",
            "Seconds spent processing a block",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 12, 30),
            registry=r,
        )
        self.failures = Counter(
            "keeper_tick_failures", "Blocks not processed, by kind of error", ["kind"], registry=r
        )
        self.decisions = Counter(
            "keeper_decisions",
            "Vault decisions, by action (a rebalance counts when it is acted on)",
            ["action"],
            registry=r,
        )
        self.deferred = Counter(
            "keeper_decisions_deferred",
            "Rebalance decisions not acted on (already in flight, fees above the cap)",
            registry=r,
        )
        for kind in ("retryable", "fatal"):  # exported at 0 before the first failure
            self.failures.labels(kind)
        for action in Action:
            self.decisions.labels(action.value)
        self.reorgs = Counter("keeper_reorgs", "Reorgs seen", registry=r)
        self.dropped_blocks = Counter(
            "keeper_dropped_blocks", "Processed blocks a reorg removed", registry=r
        )
        self.unverified_gaps = Counter(
            "keeper_unverified_gaps", "Gaps too long to backfill (logged and skipped)", registry=r
        )
        self.read_calls = Counter(
            "keeper_read_rpc_calls", "eth_calls made to read state", registry=r
        )
        self.tx = Counter(
            "keeper_transactions",
            "Transactions by kind and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.head_to_broadcast = Histogram(
            "keeper_head_to_broadcast_seconds",
            "Seconds from taking a head to broadcasting the transaction it decided",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 12),
            registry=r,
        )
        self.inclusion = Histogram(
            "keeper_inclusion_delay_blocks",
            "Blocks from first broadcast to inclusion",
            buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50),
            registry=r,
        )
        self.gas_used = Counter(
            "keeper_gas_used", "Gas used by mined transactions", ["kind"], registry=r
        )
        self.fees_eth = Counter(
            "keeper_fees_spent_eth", "ETH paid for gas by mined transactions", ["kind"], registry=r
        )
        self.balance_eth = Gauge("keeper_balance_eth", "The keeper account's balance", registry=r)
        self.vault_deviation = Gauge(
            "keeper_vault_deviation", "Delta minus target, underlying units", ["vault"], registry=r
        )
        self.vault_band = Gauge(
            "keeper_vault_band", "Band half-width, underlying units", ["vault"], registry=r
        )
        self.vault_out_of_band_blocks = Gauge(
            "keeper_vault_out_of_band_blocks",
            "Consecutive processed blocks with |deviation| above the band",
            ["vault"],
            registry=r,
        )
        self.vault_last_rebalance = Gauge(
            "keeper_vault_last_rebalance_block",
            "Block at which a rebalance of the vault was last sent",
            ["vault"],
            registry=r,
        )
        self.rpc_requests = Counter(
            "keeper_rpc_requests",
            "JSON-RPC requests by endpoint and method",
            ["endpoint", "method"],
            registry=r,
        )
        self.rpc_errors = Counter(
            "keeper_rpc_errors",
            "Failed JSON-RPC requests by endpoint, method and error",
            ["endpoint", "method", "error"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "keeper_rpc_request_seconds",
            "JSON-RPC request time by endpoint",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.rpc_head = Gauge(
            "keeper_rpc_head", "Latest head of each endpoint", ["endpoint"], registry=r
        )
        self.rpc_state = Gauge(
            "keeper_rpc_endpoint_state",
            "1 for each endpoint's current state",
            ["endpoint", "state"],
            registry=r,
        )
        self.lease_leader = Gauge(
            "keeper_lease_leader",
            "1 while this instance holds the leader lease, 0 standing by",
            registry=r,
        )
        self.lease_epoch = Gauge(
            "keeper_lease_epoch", "Epoch of the leader lease seen last", registry=r
        )
        self.lease_changes = Counter(
            "keeper_lease_transitions",
            "Changes of this instance's role (to leader, to standby)",
            ["to"],
            registry=r,
        )

    # --- process-wide access for the sending side ---------------------------------------

    def install(self) -> Metrics:
        """Make this the ``Metrics`` the module functions feed."""
        global _installed
        _installed = self
        return self

    def count_in_flight(self, count: Callable[[], int]) -> None:
        """``count`` is asked for the journal's unsettled transactions at each scrape."""
        self._in_flight = count

    # --- the runner --------------------------------------------------------------------

    def head_taken(self) -> None:
        self._head_seen_at = time.perf_counter()

    def observe_tick(self, report: TickReport, seconds: float, now: float) -> None:
        self.ticks.inc()
        self.tick_seconds.observe(seconds)
        self._count_decisions(report.decisions, report.acted)
        self._track_vaults(report.block.number, report.decisions, report.acted)
        self.reorgs.inc(int(report.chain.reorg))
        self.dropped_blocks.inc(len(report.chain.dropped))
        self.unverified_gaps.inc(int(report.chain.unverified_gap is not None))
        self.read_calls.inc(report.rpc_calls)
        self.last_block = report.block.number
        self.last_block_timestamp = report.block.timestamp
        self.last_progress_at = now

    def _count_decisions(self, decisions: Sequence[Decision], acted: frozenset[str]) -> None:
        for d in decisions:
            if d.action == Action.REBALANCE and d.vault not in acted:
                self.deferred.inc()
            else:
                self.decisions.labels(d.action.value).inc()

    def _track_vaults(
        self, block: int, decisions: Sequence[Decision], acted: Iterable[str]
    ) -> None:
        """Per-vault gauges; every registered vault has a decision each block, so a vault
        without one has left the registry."""
        for gone in set(self._out_of_band) - {d.vault for d in decisions}:
            self._forget_vault(gone)
        for d in decisions:
            if d.action == Action.SKIP and d.reason.startswith("unreadable"):
                continue
            self.vault_deviation.labels(d.vault).set(d.deviation)
            self.vault_band.labels(d.vault).set(d.band)
            outside = abs(d.deviation) > d.band > 0
            self._out_of_band[d.vault] = self._out_of_band.get(d.vault, 0) + 1 if outside else 0
            self.vault_out_of_band_blocks.labels(d.vault).set(self._out_of_band[d.vault])
        for vault in acted:
            self.vault_last_rebalance.labels(vault).set(block)

    def _forget_vault(self, vault: str) -> None:
        """A vault left the registry: its series go."""
        for family in (
            self.vault_deviation,
            self.vault_band,
            self.vault_out_of_band_blocks,
            self.vault_last_rebalance,
        ):
            with contextlib.suppress(KeyError):
                family.remove(vault)
        self._out_of_band.pop(vault, None)

    def observe_failure(self, kind: str) -> None:
        self.failures.labels(kind).inc()

    def lease_state(self, leader: bool, epoch: int) -> None:
        role = "leader" if leader else "standby"
        if role != self.role:
            self.lease_changes.labels(role).inc()
            self.role = role
        self.lease_leader.set(int(leader))
        self.lease_epoch.set(epoch)

    # --- RpcObserver ----------------------------------------------------------------------

    def rpc_request(self, endpoint: str, method: str, seconds: float, error: str | None) -> None:
        self.rpc_requests.labels(endpoint, method).inc()
        self.rpc_seconds.labels(endpoint).observe(seconds)
        if error is not None:
            self.rpc_errors.labels(endpoint, method, error).inc()

    def rpc_endpoint(self, endpoint: str, head: int | None, state: str) -> None:
        if head is not None:
            self.rpc_head.labels(endpoint).set(head)
        for s in RPC_STATES:
            self.rpc_state.labels(endpoint, s).set(int(s == state))

    # --- health and the page ---------------------------------------------------------------

    def seconds_since_progress(self, now: float) -> float:
        return now - (self.last_progress_at or self.started_at)

    def health(self, now: float, max_age_seconds: float) -> Health:
        since = self.seconds_since_progress(now)
        healthy = self.role == "standby" or since <= max_age_seconds
        return Health(healthy, self.last_block, since, self.role)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Live(Collector):
    """Families computed when the page is asked for (ages, the journal's in-flight count)."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        m, now = self._m, self._m._clock()
        since = GaugeMetricFamily(
            "keeper_seconds_since_progress",
            "Seconds since a block was last processed (since the start before the first)",
            value=m.seconds_since_progress(now),
        )
        in_flight = GaugeMetricFamily(
            "keeper_transactions_in_flight",
            "Journal entries not yet final (intent, signed, sent)",
            value=m._in_flight(),
        )
        yield since
        yield in_flight
        if m.last_block is not None and m.last_block_timestamp is not None:
            yield GaugeMetricFamily(
                "keeper_last_block_number", "Number of the last processed block", value=m.last_block
            )
            yield GaugeMetricFamily(
                "keeper_last_block_age_seconds",
                "Now minus the last processed block's timestamp",
                value=max(now - m.last_block_timestamp, 0.0),
            )


_installed: Metrics | None = None


# --- what the sending side calls ---------------------------------------------------------------


def tx_outcome(kind: str, outcome: str) -> None:
    """One transaction of ``kind`` (rebalance, settle, cancel, ...) reached ``outcome``."""
    if outcome not in TX_OUTCOMES:
        raise ValueError(f"unknown transaction outcome {outcome!r}; one of {TX_OUTCOMES}")
    if _installed is not None:
        _installed.tx.labels(kind, outcome).inc()


def tx_broadcast(kind: str) -> None:
    """A transaction of ``kind`` was first broadcast: counts ``sent`` and observes the
    latency from the head it was decided at."""
    if _installed is None:
        return
    _installed.tx.labels(kind, "sent").inc()
    if _installed._head_seen_at is not None:
        _installed.head_to_broadcast.observe(time.perf_counter() - _installed._head_seen_at)


def tx_mined(
    kind: str, gas_used: int, effective_gas_price_wei: int, sent_at_block: int, mined_at_block: int
) -> None:
    """A transaction of ``kind`` was mined (either status): gas, fee and inclusion delay."""
    if _installed is None:
        return
    _installed.gas_used.labels(kind).inc(gas_used)
    _installed.fees_eth.labels(kind).inc(gas_used * effective_gas_price_wei / WEI_PER_ETH)
    _installed.inclusion.observe(max(mined_at_block - sent_at_block, 0))


def balance(wei: int) -> None:
    """The keeper account's balance now."""
    if _installed is not None:
        _installed.balance_eth.set(wei / WEI_PER_ETH)
