"""Loading a real price history from a CSV file.

Two layouts are read: the Yahoo daily export (``Date,Open,High,Low,Close,...``, oldest
first, ``null`` on days without data) and the CryptoDataDownload hourly export (a banner
line before the header, newest first, hours written ``2019-06-04 01-AM``).

Cleaning, in this order: sort ascending; drop repeated timestamps (the first row read wins);
drop records that repeat another hour's record verbatim under a later timestamp (same
open/high/low/close/volumes, volume > 0: an exporter glitch, the hour's real record is
missing); treat zero-volume rows (no trade in the interval, a stale placeholder price) and
``null`` rows as missing; then put the series on a regular grid and bridge each run of
missing points by interpolating the log price linearly. The report says how many of each.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt

from keeper.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class LoadReport:
    """What the loader found and fixed in one file."""

    source: str
    rows_read: int
    duplicates_removed: int
    missing_rows: int  # null or zero-volume rows treated as missing
    gaps_bridged: int  # runs of consecutive missing grid points
    points_bridged: int  # grid points filled by interpolation


@dataclass(frozen=True)
class PriceSeries:
    """A regular, ascending close-price series."""

    timestamps: IntArray  # unix seconds
    close: FloatArray
    interval_seconds: int
    report: LoadReport


@dataclass(frozen=True)
class _Row:
    line: int
    timestamp: int
    close: float  # nan when missing
    volume: float  # nan when the file has no volume column
    record: tuple[str, ...]  # every field but the date, to spot verbatim repeats


def parse_timestamp(text: str) -> int:
    """Unix seconds (UTC) of ``2019-06-04``, ``2019-06-04 01-AM`` or ISO ``2019-06-04 13:00:00``."""
    text = text.strip()
    parts = text.split(" ", 1)
    day = dt.date.fromisoformat(parts[0])
    hour = 0
    minute = 0
    if len(parts) == 2:
        clock = parts[1].strip()
        if clock[-2:].upper() in ("AM", "PM"):
            hour = _twelve_hour(clock)
        else:
            time_of_day = dt.time.fromisoformat(clock)
            hour, minute = time_of_day.hour, time_of_day.minute
    moment = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)
    return int(moment.timestamp())


def _twelve_hour(clock: str) -> int:
    """``12-AM`` is midnight (0), ``12-PM`` is noon (12), ``01-PM`` is 13."""
    digits = clock[:-2].rstrip("-: ").split(":")[0]
    hour = int(digits)
    if not 1 <= hour <= 12:
        raise ValueError(f"hour {clock!r} is not 1..12 AM/PM")
    return hour % 12 + (12 if clock[-2:].upper() == "PM" else 0)


def load_price_csv(path: Path) -> PriceSeries:
    """Read, clean and regularise one price file; see the module docstring."""
    if not path.is_file():
        raise ConfigError(f"price data file not found: {path}")
    rows = _read_rows(path)
    if len(rows) < 2:
        raise ConfigError(f"{path}: fewer than two price rows")
    rows.sort(key=lambda row: row.timestamp)
    unique, duplicates = _drop_duplicates(rows)
    interval = _interval(unique, path)
    return _regularise(unique, interval, path, len(rows), duplicates)


def _read_rows(path: Path) -> list[_Row]:
    with path.open(newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    header_at = next((i for i, line in enumerate(lines[:5]) if line and line[0] == "Date"), None)
    if header_at is None:
        raise ConfigError(f"{path}: no header line starting with 'Date' in the first 5 lines")
    header = lines[header_at]
    if "Close" not in header:
        raise ConfigError(f"{path}: header has no 'Close' column: {header}")
    close_at = header.index("Close")
    volume_at = next((i for i, name in enumerate(header) if name.startswith("Volume")), None)
    rows = []
    for number, line in enumerate(lines[header_at + 1 :], start=header_at + 2):
        if not line or not line[0].strip():
            continue
        rows.append(_parse_row(path, number, line, close_at, volume_at))
    return rows


def _parse_row(
    path: Path, number: int, line: list[str], close_at: int, volume_at: int | None
) -> _Row:
    try:
        timestamp = parse_timestamp(line[0])
        close = _number(line[close_at])
        volume = _number(line[volume_at]) if volume_at is not None else math.nan
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"{path}:{number}: cannot read row {line}: {exc}") from exc
    return _Row(number, timestamp, close, volume, tuple(line[1:]))


def _number(text: str) -> float:
    text = text.strip()
    return math.nan if text in ("", "null", "NaN", "nan") else float(text)


def _drop_duplicates(rows: list[_Row]) -> tuple[list[_Row], int]:
    """Rows with a new timestamp and a record not seen at an earlier hour (if it traded)."""
    kept: list[_Row] = []
    seen_times: set[int] = set()
    seen_records: set[tuple[str, ...]] = set()
    for row in rows:
        traded = row.volume > 0.0  # False for nan and for zero volume
        if row.timestamp in seen_times or (traded and row.record in seen_records):
            continue
        seen_times.add(row.timestamp)
        if traded:
            seen_records.add(row.record)
        kept.append(row)
    return kept, len(rows) - len(kept)


def _interval(rows: list[_Row], path: Path) -> int:
    """The most common spacing between consecutive rows."""
    steps = Counter(b.timestamp - a.timestamp for a, b in pairwise(rows))
    interval, _count = steps.most_common(1)[0]
    off_grid = [row for row in rows if (row.timestamp - rows[0].timestamp) % interval]
    if off_grid:
        raise ConfigError(
            f"{path}:{off_grid[0].line}: timestamp is off the {interval}-second grid of the file"
        )
    return interval


def _regularise(
    rows: list[_Row], interval: int, path: Path, rows_read: int, duplicates: int
) -> PriceSeries:
    start = rows[0].timestamp
    size = (rows[-1].timestamp - start) // interval + 1
    log_close = np.full(size, np.nan)
    missing_rows = 0
    for row in rows:
        if math.isnan(row.close) or row.close <= 0.0 or row.volume == 0.0:
            missing_rows += 1
            continue
        log_close[(row.timestamp - start) // interval] = math.log(row.close)
    known = ~np.isnan(log_close)
    if known.sum() < 2 or not known[0] or not known[-1]:
        raise ConfigError(f"{path}: the first and last rows must carry a usable price")
    grid = np.arange(size)
    filled = np.interp(grid, grid[known], log_close[known])
    missing = ~known
    runs = int(np.count_nonzero(missing[1:] & ~missing[:-1]))
    report = LoadReport(
        source=path.name,
        rows_read=rows_read,
        duplicates_removed=duplicates,
        missing_rows=missing_rows,
        gaps_bridged=runs,
        points_bridged=int(missing.sum()),
    )
    timestamps = (start + grid * interval).astype(np.int64)
    return PriceSeries(timestamps, np.exp(filled), interval, report)
