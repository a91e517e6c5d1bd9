"""``keeper backtest`` / ``python -m keeper.backtest``: JSON fields, reproducibility, errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from keeper.backtest import cli
from keeper.backtest.measures import JSON_FIELDS

SMALL = """
name = "small"
seed = 11
n_paths = 60
horizon = "7d"
step = "4h"
risk_aversion = 1e-4

[book]
spot = 3000.0
vol = 0.8
rate = 0.05
[[book.legs]]
moneyness = 1.0
size = -10.0
type = "call"
[[book.legs]]
moneyness = 0.9
size = -10.0
type = "put"

[paths]
model = "merton"
drift = 0.1
vol = 0.8
jump_intensity = 20.0
jump_mean = -0.02
jump_std = 0.05

[gas]
model = "stochastic"
base_fee_gwei = 30.0
half_life = "2h"
vol_per_sqrt_day = 1.0
spikes_per_day = 2.0
spike_multiplier = 4.0

[costs]
gas_per_rebalance = 180000
gas_per_extra_vault = 120000
batch_vaults = 3
priority_fee_gwei = 1.0
dex_fee_bps = 5.0
slippage_bps_per_unit = 0.5

[vault]
band_floor = 0.05
hard_limit = 5.0

[[policies]]
name = "band"
kind = "gas_adjusted_band"
sweep = [1e-4, 4e-4]
[[policies]]
name = "clock"
kind = "time_based"
interval_steps = 3
sweep = [1, 3]
[[policies]]
name = "fixed"
kind = "fixed_threshold"
threshold = 1.0
[[policies]]
kind = "every_step"
[[policies]]
kind = "no_hedge"
"""


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_carries_the_named_fields_for_every_policy(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, str(small), "--json")
    assert code == 0
    document = json.loads(out)
    assert set(document["policies"]) == {"band", "clock", "fixed", "every_step", "no_hedge"}
    for name, fields in document["policies"].items():
        for field in JSON_FIELDS:
            assert isinstance(fields[field], float), (name, field)
        assert fields["option_price"] == document["option_price"] > 0
        assert fields["hedge_cost_std_ratio"] == pytest.approx(
            fields["hedge_cost_std"] / fields["option_price"]
        )
        assert fields["total_cost"] == pytest.approx(
            fields["gas_paid_mean"]
            + fields["fees_paid_mean"]
            + fields["slippage_paid_mean"]
            + document["risk_aversion"] * fields["hedge_cost_std"] ** 2
        )
    policies = document["policies"]
    assert policies["no_hedge"]["rebalances_mean"] == 0.0
    assert policies["no_hedge"]["gas_paid_mean"] == 0.0
    assert policies["every_step"]["rebalances_mean"] == document["n_steps"] == 42
    assert policies["band"]["selection"] == "best of sweep"
    assert [p["param"] for p in document["sweeps"]["clock"]] == [1.0, 3.0]
    assert {c["against"] for c in document["comparisons"]} == {"time_based", "fixed_threshold"}


def test_same_seed_same_json_other_seed_other_json(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_cli(capsys, str(small), "--json")[1]
    second = run_cli(capsys, str(small), "--json")[1]
    other = run_cli(capsys, str(small), "--json", "--seed", "12")[1]
    assert first == second
    assert json.loads(other)["policies"] != json.loads(first)["policies"]


def test_table_json_file_and_plot(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the plot extra)")
    png = tmp_path / "study.png"
    out_json = tmp_path / "study.json"
    code, out, _ = run_cli(capsys, str(small), "--plot", str(png), "--json-out", str(out_json))
    assert code == 0
    assert "std/price" in out and "every_step" in out and "sweeps" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert set(json.loads(out_json.read_text())["policies"]["clock"]) >= set(JSON_FIELDS)


def test_a_malformed_scenario_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.replace("vol = 0.8\nrate", "vol = -0.8\nrate"))
    code, out, err = run_cli(capsys, str(bad), "--json")
    assert code == 2 and out == ""
    assert "bad.toml: field 'book.vol': must be positive" in err


def test_list_and_missing_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--list")
    assert code == 0 and "eth_30d_short_call" in out.split()
    code, _, err = run_cli(capsys, "nope")
    assert code == 2 and "not found" in err


def test_add_parser_wires_into_a_main_parser(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="keeper")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    args = parser.parse_args(["backtest", str(small), "--json", "--no-sweep"])
    assert args.func is cli.run
    assert cli.run(args) == 0
    assert "sweeps" in json.loads(capsys.readouterr().out)


def test_python_dash_m_runs(small: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keeper.backtest",
            str(small),
            "--json",
            "--no-sweep",
            "--paths",
            "10",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout)["n_paths"] == 10


def test_json_decomposition_and_realised_vol_flag(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, str(small), "--json")
    assert code == 0
    document = json.loads(out)
    (rows,) = document["decomposition"]["samples"].values()  # simulated: all paths only
    for row in rows:
        parts = row["unhedgeable"] + row["covariance"] + row["own_costs"] + row["own_error"]
        assert parts == pytest.approx(row["total_cost"], rel=1e-9)
        assert row["controllable"] == pytest.approx(row["total_cost"] - row["unhedgeable"])
    band = next(r for r in rows if r["family"] == "gas_adjusted_band")
    assert band["saving_vs_band"] == 0.0
    code, realised, _ = run_cli(capsys, str(small), "--json", "--realized-vol", "6h")
    assert code == 0
    assert json.loads(realised)["policies"] != document["policies"]
    assert run_cli(capsys, str(small), "--realized-vol", "soon")[0] == 2
