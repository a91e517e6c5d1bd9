"""Two `keeper run` processes on one PostgreSQL for a couple of hundred blocks, the leader
killed (SIGKILL) and later paused (SIGSTOP) mid-run: one leads at a time, the standby takes
over, the paused leader sends nothing after it resumes, nothing is sent twice, nothing
crashes. The takeover times (in blocks of this test's 0.5 s block time) are printed."""

from __future__ import annotations

import bisect
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import ForkedWorld
from keeper_support import spawn_keeper, wait_until
from test_keeper_crash import postgres_schema_url

from keeper.store import JournalState, Store, TxKind

BLOCK_SECONDS = 0.5
LEASE_TTL = "2"


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_schema_url()


@dataclass
class Instance:
    name: str
    log: Path
    proc: subprocess.Popen[bytes]
    paused_at: float | None = None
    resumed_at: float | None = None

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line, "ts": 0.0, "raw": True})
        return out

    def said(self, message: str) -> bool:
        return any(str(line.get("msg", "")).startswith(message) for line in self.lines())


@dataclass
class Run:
    rpc_url: str
    manifest: Path
    db_url: str
    key: str
    tmp: Path
    instances: list[Instance] = field(default_factory=list)

    def start(self, name: str) -> Instance:
        log = self.tmp / f"{name}.log"
        proc = spawn_keeper(
            self.rpc_url,
            self.manifest,
            self.db_url,
            log,
            private_key=self.key,
            lease_ttl_seconds=LEASE_TTL,
        )
        instance = Instance(name, log, proc)
        self.instances.append(instance)
        return instance


def leading(instance: Instance) -> bool:
    return instance.said("leader lease taken: this instance leads")


def test_one_leader_at_a_time_through_a_kill_and_a_pause(
    pg_url: str,
    rpc_url: str,
    fresh_world: ForkedWorld,
    keeper_key: str,
    governance: Any,
    chain: Any,
    tmp_path: Path,
) -> None:
    run = Run(rpc_url, fresh_world.manifest_file, pg_url, keeper_key, tmp_path)
    store = Store(pg_url)
    a = run.start("a")
    wait_until("a to lead", lambda: leading(a), a.proc, a.log, 60)
    b = run.start("b")
    wait_until(
        "b to stand by",
        lambda: b.said("standing by: another instance holds the leader lease"),
        b.proc,
        b.log,
        60,
    )
    takeovers: dict[str, int] = {}
    price = float(fresh_world.feed.latestRoundData()[1]) / 1e8
    first_block = chain.blocks.head.number
    moves: list[int] = []
    killed_at: int | None = None
    stopped_at: int | None = None
    a2: Instance | None = None
    try:
        for n in range(1, 201):
            if n % 20 == 0:  # the straddle's band is about $4 of spot: one rebalance a move
                price += 7 if (n // 20) % 2 else -7
                fresh_world.set_price(price, governance)
                moves.append(chain.blocks.head.number)
            chain.mine()
            time.sleep(BLOCK_SECONDS)
            head = chain.blocks.head.number
            last = store.last_block()
            if n == 60:  # the leader dies
                a.proc.send_signal(signal.SIGKILL)
                a.proc.wait(10)
                killed_at = head
            elif (
                killed_at is not None
                and "kill" not in takeovers
                and last
                and last.number > killed_at
            ):
                takeovers["kill"] = head - killed_at
                a2 = run.start("a2")  # back as a standby
            if n == 120:  # the leader (b) freezes
                b.proc.send_signal(signal.SIGSTOP)
                b.paused_at = time.time()
                stopped_at = head
            elif (
                stopped_at is not None
                and "pause" not in takeovers
                and last
                and last.number > stopped_at
            ):
                takeovers["pause"] = head - stopped_at
            if n == 150:
                b.proc.send_signal(signal.SIGCONT)
                b.resumed_at = time.time()
        assert a2 is not None
        wait_until(
            "b to notice it lost the lease", lambda: b.said("stopped leading"), b.proc, b.log, 30
        )
    finally:
        for instance in run.instances:
            if instance.proc.poll() is None:
                instance.proc.send_signal(signal.SIGCONT)
                instance.proc.send_signal(signal.SIGTERM)
        codes = {i.name: i.proc.wait(30) for i in run.instances}
    print(
        f"\ntakeover after the leader's death: {takeovers.get('kill')} blocks of {BLOCK_SECONDS}s"
    )
    print(
        f"takeover after the leader froze:    {takeovers.get('pause')} blocks of {BLOCK_SECONDS}s"
    )

    # 0 crashes: every instance but the killed one stopped cleanly on SIGTERM
    assert codes == {"a": -signal.SIGKILL, "b": 0, "a2": 0}, codes
    for instance in run.instances:
        assert not any("Traceback" in line.get("msg", "") for line in instance.lines())
    assert set(takeovers) == {"kill", "pause"}

    # the frozen leader sent and wrote nothing after it resumed: it stood by
    assert b.paused_at is not None
    late = [
        line
        for line in b.lines()
        if line.get("ts", 0) > b.paused_at
        and line.get("msg") in ("transaction sent", "re-broadcast")
    ]
    assert late == []

    # 0 double sends: every keeper transaction on chain is one journal entry, and each vault
    # was rebalanced at most once per price move
    entries = store.entries_in(list(JournalState), None)
    mined = [e for e in entries if e.kind == TxKind.REBALANCE and e.state == JournalState.MINED]
    assert len(mined) >= 5, "the price moves made the keepers rebalance"
    per_move: dict[tuple[str, int], int] = {}
    for entry in mined:
        assert entry.mined_block_number is not None
        move = bisect.bisect_right(moves, entry.mined_block_number)
        for vault in entry.vaults:
            per_move[(vault, move)] = per_move.get((vault, move), 0) + 1
    assert max(per_move.values()) == 1, per_move
    journaled = {e.tx_hash for e in entries if e.tx_hash}
    sent = keeper_transactions(chain, fresh_world.manifest.keeper, first_block)
    assert sent <= journaled, sent - journaled  # nothing reached the chain unjournaled


def keeper_transactions(chain: Any, keeper: str, first: int) -> set[str]:
    """Hashes of the transactions ``keeper`` sent in blocks ``first``..head."""
    w3 = chain.provider.web3
    found = set()
    for number in range(first, chain.blocks.head.number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if str(tx["from"]).lower() == keeper.lower():
                found.add("0x" + bytes(tx["hash"]).hex())
    return found
