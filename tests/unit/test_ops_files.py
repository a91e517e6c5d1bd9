"""The operator's files: alert rules load and fire on synthetic series (promtool), and every
metric the rules and the Grafana dashboard use is one the keeper exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from keeper.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: tools/setup.sh installs the Debian package prometheus")
        pytest.skip("promtool missing (tools/setup.sh installs it as root)")
    return found


def test_the_alert_rules_load() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(OPS / "alerts.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 10 rules found" in done.stdout


def test_the_alert_rules_fire_on_synthetic_series() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        capture_output=True,
        text=True,
        cwd=OPS,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def exported_families() -> set[str]:
    """Every family the keeper's page can carry (a keeper that has done one of everything)."""
    m = Metrics(started_at=0.0)
    m.rpc_request("a:1", "eth_call", 0.1, "RpcError")
    m.rpc_endpoint("a:1", 1, "healthy")
    m.lease_state(True, 1)
    m.last_block, m.last_block_timestamp = 1, 1
    m.tx.labels("rebalance", "mined").inc()
    m.gas_used.labels("rebalance").inc()
    m.fees_eth.labels("rebalance").inc()
    for gauge in (m.vault_deviation, m.vault_band, m.vault_out_of_band_blocks):
        gauge.labels("x").set(1)
    m.vault_last_rebalance.labels("x").set(1)
    m.failures.labels("fatal").inc()
    m.decisions.labels("hold").inc()
    page = m.render().decode()
    names = set(re.findall(r"^([a-z_][a-z0-9_]*)(?:\{| )", page, re.MULTILINE))
    return names


def used_names(text: str) -> set[str]:
    return {n for n in re.findall(r"\b((?:keeper|process)_[a-z0-9_]+)", text)}


def test_every_metric_the_rules_and_dashboard_use_is_exported() -> None:
    exported = exported_families()
    rules = used_names((OPS / "alerts.yml").read_text())
    dashboard = json.loads((OPS / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    used = rules | used_names(exprs)
    assert len(used) > 20 and used <= exported, sorted(used - exported)


def test_the_dashboard_is_grafana_json_with_unique_panel_ids() -> None:
    dashboard = json.loads((OPS / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert dashboard["uid"] == "optkeeper" and len(ids) == len(set(ids)) >= 15
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
