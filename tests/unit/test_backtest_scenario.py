"""Scenario files: the shipped ones load, malformed ones fail naming the field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from keeper.backtest.durations import parse_duration
from keeper.backtest.gas import StochasticGas
from keeper.backtest.paths import GbmModel
from keeper.backtest.scenario import (
    DEFAULT_DATA_DIR,
    SCENARIO_DIR,
    HistoryModel,
    PolicyFamily,
    find_scenario,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
)
from keeper.errors import ConfigError

BASE = (SCENARIO_DIR / "eth_30d_short_call.toml").read_text()


def parse(text: str, data_dir: Path = DEFAULT_DATA_DIR) -> object:
    return parse_scenario(tomllib.loads(text), "test.toml", data_dir)


def test_the_required_scenarios_ship() -> None:
    assert {"eth_30d_short_call", "straddle_real_hourly", "zero_cost_textbook"} <= set(
        shipped_scenarios()
    )


def test_eth_scenario_reads_every_section() -> None:
    scenario = load_scenario("eth_30d_short_call")
    assert scenario.n_steps == 30 * 24 * 6 and scenario.step_seconds == 600.0
    assert scenario.book.legs[0].strike == pytest.approx(3150.0)
    assert scenario.book.legs[0].size == -100.0 and scenario.book.legs[0].is_call
    assert scenario.book.vol == 0.8
    assert isinstance(scenario.paths, GbmModel)
    assert isinstance(scenario.gas, StochasticGas) and scenario.gas.base_fee_gwei == 30.0
    families = [spec.family for spec in scenario.policies]
    assert set(families) == set(PolicyFamily)


@pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason=f"{DEFAULT_DATA_DIR} is absent")
def test_real_data_scenario_resolves_the_shared_folder() -> None:
    scenario = load_scenario("straddle_real_hourly")
    assert isinstance(scenario.paths, HistoryModel)
    assert scenario.paths.file == DEFAULT_DATA_DIR / "coinbase_ethusd_hourly_2017_2019.csv"
    assert scenario.n_paths is None
    assert len(scenario.book.legs) == 2


def test_missing_data_file_names_field_and_file(tmp_path: Path) -> None:
    text = (SCENARIO_DIR / "straddle_real_hourly.toml").read_text()
    with pytest.raises(ConfigError, match=r"field 'paths.file'.*not found: .*coinbase_ethusd"):
        parse(text, tmp_path)


@pytest.mark.parametrize(
    ("old", "new", "field", "problem"),
    [
        ("threshold = 5.0          # ETH", "threshold = -5.0", "policies[2].threshold", "positive"),
        ("threshold = 5.0          # ETH", 'threshold = "five"', "policies[2].threshold", "number"),
        (
            "interval_steps = 36      # every 6 h",
            "interval_steps = 2.5",
            "policies[1].interval_steps",
            "whole",
        ),
        ('kind = "time_based"', 'kind = "sometimes"', "policies[1].kind", "one of"),
        ('step = "10m"', 'step = "7m"', "step", "whole number of steps"),
        ('step = "10m"', 'step = "10 fortnights"', "step", "duration"),
        ('step = "10m"', 'stepp = "10m"', "step", "exactly one"),
        ("n_paths = 2000", "n_paths = 1", "n_paths", "at least 2"),
        ("n_paths = 2000", "", "n_paths", "required"),
        ('type = "call"', 'type = "straddle"', "book.legs[0].type", "call, put"),
        (
            "moneyness = 1.05",
            "moneyness = 1.05\nstrike = 3000.0",
            "book.legs[0].strike",
            "exactly one",
        ),
        ("size = -100.0", "size = 0.0", "book.legs[0].size", "non-zero"),
        ('half_life = "2h"', 'half_life = "-2h"', "gas.half_life", "duration"),
        (
            "dex_fee_bps = 5.0",
            "dex_fee_bps = 5.0\ndex_fees_bps = 5.0",
            "costs.dex_fees_bps",
            "not a known field",
        ),
        ('model = "gbm"', 'model = "heston"', "paths.model", "gbm, merton, history"),
        ("hard_limit = 25.0", "hard_limit = 0.0", "vault.hard_limit", "positive"),
        ('name = "time_based"\nkind', 'name = "gas_band"\nkind', "policies[1].name", "duplicate"),
    ],
)
def test_malformed_field_is_named(old: str, new: str, field: str, problem: str) -> None:
    assert old in BASE
    with pytest.raises(ConfigError) as caught:
        parse(BASE.replace(old, new, 1))
    message = str(caught.value)
    assert f"field '{field}'" in message
    assert problem in message
    assert message.startswith("test.toml: ")


def test_a_missing_section_is_named() -> None:
    start = BASE.index("[vault]")
    end = BASE.index("[[policies]]")
    with pytest.raises(ConfigError, match=r"field 'vault': is required"):
        parse(BASE[:start] + BASE[end:])


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x\n')
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML"):
        load_scenario(str(path))


def test_unknown_scenario_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="zero_cost_textbook"):
        find_scenario("no_such_study")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12s", 12),
        ("block", 12),
        ("5m", 300),
        ("1h", 3600),
        ("30d", 2592000),
        ("1w/4", 151200),
        (90, 90),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "f") == seconds
