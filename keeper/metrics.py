"""What the keeper has done, as numbers an operator can alert on (Prometheus text format 0.0.4).

In memory, fed by the runner after every tick; time is passed in. Exposition format:
https://prometheus.io/docs/instrumenting/exposition_formats/ (text-based format).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from keeper.core.types import Action
from keeper.pipeline import TickReport


@dataclass(frozen=True)
class Health:
    """Healthy while a block was processed within ``max_age_seconds`` (or since the start)."""

    healthy: bool
    last_block: int | None
    seconds_since_progress: float


@dataclass
class Metrics:
    started_at: float  # unix seconds
    ticks: int = 0
    tick_seconds_sum: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)  # by "retryable" / "fatal"
    decisions: Counter[str] = field(default_factory=Counter)  # by action
    reorgs: int = 0
    dropped_blocks: int = 0
    unverified_gaps: int = 0
    rpc_calls: int = 0
    last_block: int | None = None
    last_block_timestamp: int | None = None
    last_progress_at: float | None = None  # unix seconds of the last processed tick

    def observe_tick(self, report: TickReport, seconds: float, now: float) -> None:
        self.ticks += 1
        self.tick_seconds_sum += seconds
        self.decisions.update(d.action.value for d in report.decisions)
        self.reorgs += int(report.chain.reorg)
        self.dropped_blocks += len(report.chain.dropped)
        self.unverified_gaps += int(report.chain.unverified_gap is not None)
        self.rpc_calls += report.rpc_calls
        self.last_block = report.block.number
        self.last_block_timestamp = report.block.timestamp
        self.last_progress_at = now

    def observe_failure(self, kind: str) -> None:
        self.failures[kind] += 1

    def seconds_since_progress(self, now: float) -> float:
        return now - (self.last_progress_at or self.started_at)

    def health(self, now: float, max_age_seconds: float) -> Health:
        since = self.seconds_since_progress(now)
        return Health(since <= max_age_seconds, self.last_block, since)

    def render(self, now: float, transactions_in_flight: int = 0) -> str:
        """The Prometheus text exposition of every metric; ``transactions_in_flight`` is read
        from the journal when the page is asked for, not on every block."""
        lines: list[str] = []
        _family(lines, "keeper_ticks_total", "counter", "Blocks processed", [("", self.ticks)])
        _family(
            lines,
            "keeper_tick_seconds",
            "summary",
            "Seconds spent processing a block",
            [("_sum", self.tick_seconds_sum), ("_count", self.ticks)],
        )
        _family(
            lines,
            "keeper_tick_failures_total",
            "counter",
            "Blocks not processed, by kind of error",
            [(f'{{kind="{k}"}}', self.failures[k]) for k in ("retryable", "fatal")],
        )
        _family(
            lines,
            "keeper_decisions_total",
            "counter",
            "Vault decisions, by action",
            [(f'{{action="{a.value}"}}', self.decisions[a.value]) for a in Action],
        )
        _family(lines, "keeper_reorgs_total", "counter", "Reorgs seen", [("", self.reorgs)])
        _family(
            lines,
            "keeper_dropped_blocks_total",
            "counter",
            "Processed blocks a reorg removed",
            [("", self.dropped_blocks)],
        )
        _family(
            lines,
            "keeper_unverified_gaps_total",
            "counter",
            "Gaps too long to backfill (logged and skipped)",
            [("", self.unverified_gaps)],
        )
        _family(
            lines,
            "keeper_read_rpc_calls_total",
            "counter",
            "eth_calls made to read state",
            [("", self.rpc_calls)],
        )
        _family(
            lines,
            "keeper_transactions_in_flight",
            "gauge",
            "Journal entries not yet final (intent, signed, sent)",
            [("", transactions_in_flight)],
        )
        if self.last_block is not None and self.last_block_timestamp is not None:
            _family(
                lines,
                "keeper_last_block_number",
                "gauge",
                "Number of the last processed block",
                [("", self.last_block)],
            )
            _family(
                lines,
                "keeper_last_block_age_seconds",
                "gauge",
                "Now minus the last processed block's timestamp",
                [("", max(now - self.last_block_timestamp, 0.0))],
            )
        _family(
            lines,
            "keeper_seconds_since_progress",
            "gauge",
            "Seconds since a block was last processed (since the start before the first)",
            [("", self.seconds_since_progress(now))],
        )
        return "\n".join(lines) + "\n"


def _family(
    lines: list[str], name: str, kind: str, help_text: str, samples: list[tuple[str, float]]
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
