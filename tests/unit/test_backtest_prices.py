"""The real-price CSV loader: the two shared files and small hand-made ones."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from keeper.backtest.paths import history_paths
from keeper.backtest.prices import load_price_csv, parse_timestamp
from keeper.backtest.scenario import DEFAULT_DATA_DIR
from keeper.errors import ConfigError

HOURLY = DEFAULT_DATA_DIR / "coinbase_ethusd_hourly_2017_2019.csv"
DAILY = DEFAULT_DATA_DIR / "eth_usd_daily_2015_2021.csv"
needs_data = pytest.mark.skipif(
    not DEFAULT_DATA_DIR.is_dir(),
    reason=f"shared price data folder {DEFAULT_DATA_DIR} is absent: real-data tests skipped",
)


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-06-04 12-AM", "2019-06-04T00:00"),
        ("2019-06-04 01-AM", "2019-06-04T01:00"),
        ("2019-06-04 11-AM", "2019-06-04T11:00"),
        ("2019-06-04 12-PM", "2019-06-04T12:00"),
        ("2019-06-04 01-PM", "2019-06-04T13:00"),
        ("2019-06-04 11-PM", "2019-06-04T23:00"),
        ("2019-06-04", "2019-06-04T00:00"),
        ("2019-06-04 13:30:00", "2019-06-04T13:30"),
    ],
)
def test_timestamps_parse_the_twelve_hour_clock(text: str, expected: str) -> None:
    assert parse_timestamp(text) == utc(expected)


def test_a_bad_hour_is_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("Date,Close\n2019-01-01 13-PM,1\n2019-01-01 01-PM,2\n")
    with pytest.raises(ConfigError, match=r"bad.csv:2"):
        load_price_csv(path)


@needs_data
def test_hourly_file_banner_order_duplicates_and_gaps() -> None:
    series = load_price_csv(HOURLY)
    report = series.report
    assert series.interval_seconds == 3600
    assert np.all(np.diff(series.timestamps) == 3600)  # ascending, regular, no repeats
    assert series.timestamps[0] == utc("2017-07-01T11:00")  # the oldest row, 2017-07-01 11-AM
    assert series.timestamps[-1] == utc("2019-06-04T01:00")  # the newest, first data line
    assert series.close[-1] == pytest.approx(248.22)
    assert series.close[0] == pytest.approx(275.01)
    assert report.rows_read == 16863  # the banner and the header are not rows
    assert report.duplicates_removed == 5  # 2017-11-12 04..08-AM repeat 11-PM..03-AM verbatim
    assert report.missing_rows == 9  # zero-volume placeholder hours
    assert report.gaps_bridged > 0
    assert report.points_bridged == 14
    assert series.close.size == report.rows_read  # every hour of the span is on the grid
    assert np.all(series.close > 0)


@needs_data
def test_hourly_file_bridges_the_repeated_block_by_interpolation() -> None:
    series = load_price_csv(HOURLY)
    start = int(np.searchsorted(series.timestamps, utc("2017-11-12T03:00")))
    block = series.close[start : start + 7]  # 03-AM (kept) .. 09-AM (kept)
    assert block[0] == pytest.approx(305.75) and block[-1] == pytest.approx(304.77)
    log_steps = np.diff(np.log(block))
    np.testing.assert_allclose(log_steps, log_steps[0])  # a straight line in log price


@needs_data
def test_daily_file_is_ascending_and_bridges_null_days() -> None:
    series = load_price_csv(DAILY)
    report = series.report
    assert series.interval_seconds == 86400
    assert np.all(np.diff(series.timestamps) == 86400)
    assert series.timestamps[0] == utc("2015-08-07T00:00")
    assert series.close[0] == pytest.approx(2.772120)
    assert report.duplicates_removed == 0
    assert report.missing_rows == 4  # 'null' rows
    assert report.gaps_bridged == 3  # 2020-04-17, 2020-10-09, 2020-10-12..13
    assert report.points_bridged == 4


def test_loader_sorts_deduplicates_and_bridges(tmp_path: Path) -> None:
    path = tmp_path / "hourly.csv"
    path.write_text(
        "Some banner,https://example\n"
        "Date,Symbol,Open,High,Low,Close,Volume ETH,Volume USD\n"
        "2020-01-01 05-AM,ETHUSD,1,1,1,160,5,5\n"
        "2020-01-01 02-AM,ETHUSD,1,1,1,120,5,5\n"
        "2020-01-01 02-AM,ETHUSD,9,9,9,999,9,9\n"  # same hour again: the first read wins
        "2020-01-01 01-AM,ETHUSD,1,1,1,110,0.0,0.0\n"  # no trades: missing
        "2020-01-01 12-AM,ETHUSD,1,1,1,100,5,5\n"
    )
    series = load_price_csv(path)
    assert series.timestamps.tolist() == [utc(f"2020-01-01T0{h}:00") for h in range(6)]
    assert series.report.duplicates_removed == 1
    assert series.report.missing_rows == 1
    assert series.report.gaps_bridged == 2  # 01-AM, and 03..04-AM
    assert series.report.points_bridged == 3
    assert series.close[2] == pytest.approx(120)
    assert series.close[1] == pytest.approx(np.sqrt(100 * 120))  # geometric midpoint
    assert series.close[4] == pytest.approx(120 * (160 / 120) ** (2 / 3))


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.csv"):
        load_price_csv(tmp_path / "nowhere.csv")


@needs_data
def test_rolling_windows_rescale_real_history() -> None:
    series = load_price_csv(HOURLY)
    paths = history_paths(series, 3000.0, 3600.0, 24, stride_seconds=86400.0)
    assert paths.spot.shape == (25, (series.close.size - 24 - 1) // 24 + 1)
    np.testing.assert_allclose(paths.spot[0], 3000.0)
    first = series.close[:25]
    np.testing.assert_allclose(paths.spot[:, 0], 3000.0 * first / first[0])
    with pytest.raises(ConfigError, match="whole multiple"):
        history_paths(series, 3000.0, 600.0, 24, stride_seconds=86400.0)
