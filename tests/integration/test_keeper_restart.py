"""`keeper run --dry-run` as a process: killed with SIGKILL, restarted, it resumes from the
stored block and verifies the chain from there (no block is skipped silently)."""

from __future__ import annotations

import itertools
import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

from keeper_support import reached, spawn_keeper, wait_until

from keeper.store import Store
from world.node import free_port


def test_killed_keeper_resumes_from_the_stored_block(
    rpc_url: str, fresh_world: Any, chain: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'keeper.sqlite'}"
    log = tmp_path / "keeper.log"
    store = Store(db_url)
    proc = spawn_keeper(rpc_url, fresh_world.manifest_file, db_url, log, "--dry-run")
    try:
        chain.mine()
        first = chain.blocks.head.number
        wait_until(f"block {first}", reached(store, first), proc, log)
        chain.mine(2)
        wait_until(f"block {first + 2}", reached(store, first + 2), proc, log)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    stopped_at = store.last_block()
    assert stopped_at is not None
    chain.mine(5)  # blocks arrive while the keeper is down
    head = chain.blocks.head.number
    proc = spawn_keeper(rpc_url, fresh_world.manifest_file, db_url, log, "--dry-run")
    try:
        wait_until(f"block {head}", reached(store, head), proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    text = log.read_text()
    assert "resuming after stored block" in text and str(stopped_at.number) in text
    assert "backfilled blocks" in text  # the gap was fetched and linked, not skipped
    kept = store.recent_blocks(64)
    numbers = [b.number for b in kept if b.number > stopped_at.number]
    assert numbers == list(range(stopped_at.number + 1, head + 1))
    for older, newer in itertools.pairwise(kept):
        if newer.number == older.number + 1:
            assert newer.parent_hash == older.hash
    assert {d.block_number for d in store.latest_decisions()} == {head}


def test_a_database_of_another_chain_is_refused_before_anything_runs(
    rpc_url: str, fresh_world: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'keeper.sqlite'}"
    log = tmp_path / "keeper.log"
    other = Store(db_url)
    other.bind_chain(1)  # a mainnet keeper's database, pointed at the fork by mistake
    proc = spawn_keeper(rpc_url, fresh_world.manifest_file, db_url, log, "--dry-run")
    assert proc.wait(60) == 2
    assert "the database journals chain 1, the node is on chain 31337" in log.read_text()
    assert other.last_block() is None  # not one block was processed into it


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status), response.read().decode()


def test_a_running_keeper_serves_metrics_and_health(
    rpc_url: str, fresh_world: Any, chain: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'keeper.sqlite'}"
    log = tmp_path / "keeper.log"
    store = Store(db_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = spawn_keeper(
        rpc_url, fresh_world.manifest_file, db_url, log, "--dry-run", metrics_port=str(port)
    )
    try:
        chain.mine(3)
        head = chain.blocks.head.number
        wait_until(f"block {head}", reached(store, head), proc, log)
        status, body = _get(f"{base}/health")
        assert status == 200
        health = json.loads(body)
        assert health["healthy"] and health["last_block"] == head
        status, text = _get(f"{base}/metrics")
        assert status == 200
        values = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }
        assert values["keeper_last_block_number"] == head
        ticks = values["keeper_ticks_total"]
        assert ticks >= 1
        decided = sum(v for k, v in values.items() if k.startswith("keeper_decisions_total"))
        assert decided == ticks * len(fresh_world.vaults)  # every vault, every processed block
        assert values["keeper_read_rpc_calls_total"] >= ticks  # (+ the registry sync at start)
        assert values['keeper_tick_failures_total{kind="fatal"}'] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
