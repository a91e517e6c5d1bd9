"""The fenced leader lease on PostgreSQL, and SQLite's single-instance lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_store import Backend, block, why_postgres_unreachable

from keeper.errors import ConfigError, LeaseLost
from keeper.store import Store
from keeper.store.lease import Held, Standby


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backend]:
    reason = why_postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    made = Backend("postgres", tmp_path)
    yield made
    made.close()


@pytest.mark.postgres
def test_one_leads_the_other_stands_by_and_takes_over_at_a_new_epoch(pg: Backend) -> None:
    a, b = pg.store(), pg.store()
    first = a.take_lease("a", ttl_seconds=60)
    waiting = b.take_lease("b", ttl_seconds=0.5)
    assert first == Held(1, 60)
    assert isinstance(waiting, Standby) and waiting.holder == "a" and waiting.epoch == 1
    assert a.take_lease("a", ttl_seconds=0.3) == Held(1, 0.3)  # renewal keeps the epoch
    a.record_block(block(1))  # the leader writes
    time.sleep(0.5)  # a stops renewing (paused, dead): its lease runs out
    assert b.take_lease("b", ttl_seconds=0.5) == Held(2, 0.5)
    with pytest.raises(LeaseLost, match="held by b at epoch 2"):
        a.record_block(block(2))
    with pytest.raises(LeaseLost):
        a.check_lease()
    b.record_block(block(2))
    assert isinstance(a.take_lease("a", ttl_seconds=0.5), Standby)
    assert [x.number for x in b.recent_blocks(5)] == [1, 2]


@pytest.mark.postgres
def test_a_released_lease_is_taken_at_once(pg: Backend) -> None:
    a, b = pg.store(), pg.store()
    a.take_lease("a", ttl_seconds=60)
    assert isinstance(b.take_lease("b", ttl_seconds=60), Standby)
    a.release_lease()
    assert b.take_lease("b", ttl_seconds=60) == Held(2, 60)


@pytest.mark.postgres
def test_a_takeover_waits_for_the_leaders_write_in_flight(pg: Backend) -> None:
    """The fence holds the lease row FOR SHARE until the write commits: a standby's takeover
    cannot slip in between the epoch check and the write."""
    a, b = pg.store(), pg.store()
    a.take_lease("a", ttl_seconds=0.2)
    time.sleep(0.3)  # expired: b may take over ...
    taken: list[Held | Standby] = []
    in_write, finish = threading.Event(), threading.Event()

    def leader_writes() -> None:
        with a._write() as conn:  # ... but a is writing at its epoch right now
            in_write.set()
            finish.wait(10)
            assert conn is not None

    writer = threading.Thread(target=leader_writes)
    writer.start()
    assert in_write.wait(10)
    taker = threading.Thread(target=lambda: taken.append(b.take_lease("b", ttl_seconds=60)))
    taker.start()
    taker.join(0.5)
    assert taker.is_alive() and not taken  # waiting for a's write to commit
    finish.set()
    writer.join(10)
    taker.join(10)
    assert taken == [Held(2, 60)]
    with pytest.raises(LeaseLost):
        a.record_block(block(1))


@pytest.mark.postgres
def test_two_instances_recording_the_same_blocks_never_collide(pg: Backend) -> None:
    """keeper_blocks: the same block recorded by two instances at once is one row, no
    UniqueViolation."""
    stores = [pg.store(), pg.store()]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def record(store: Store) -> None:
        try:
            for n in range(1, 41):
                barrier.wait(10)
                store.record_block(block(n))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert [b.number for b in stores[0].recent_blocks(100)] == list(range(1, 41))


def test_a_second_keeper_on_one_sqlite_file_is_refused_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keeper.sqlite'}"
    first, second = Store(url), Store(url)
    try:
        assert first.take_lease("a", ttl_seconds=20) == Held(1, 20)
        with pytest.raises(ConfigError, match="SQLite is single-instance") as refused:
            second.take_lease("b", ttl_seconds=20)
        assert "KEEPER_DB_URL" in str(refused.value) and "keeper.sqlite" in str(refused.value)
        first.close()  # the lock goes with the process (here: the store) ...
        # ... and whoever holds the lock is the only keeper: it leads at once
        assert second.take_lease("b", ttl_seconds=20) == Held(2, 20)
    finally:
        second.close()


@pytest.mark.postgres
def test_a_standby_waits_quietly_and_leads_once_the_leader_lets_go(
    pg: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """Two ``LeaderLease`` loops: the second logs one INFO line, shows ``standby`` in its
    metrics, and leads at a new epoch as soon as the first releases the lease."""
    import asyncio

    from keeper.metrics import Metrics
    from keeper.runner import LeaderLease

    leader_metrics, standby_metrics = Metrics(0.0), Metrics(0.0)
    leader = LeaderLease(pg.store(), 60.0, leader_metrics, holder="a")
    standby = LeaderLease(pg.store(), 2.0, standby_metrics, holder="b")

    async def go() -> tuple[int, int, float]:
        first = await leader.wait_until_leader()
        waiting = asyncio.create_task(standby.wait_until_leader())
        await asyncio.sleep(1.2)  # a few polls of the standby (every ttl / 4)
        assert not waiting.done()
        role_while_waiting = standby_metrics.lease_leader._value.get()
        leader.release()
        second = await asyncio.wait_for(waiting, 10)
        return first, second, role_while_waiting

    with caplog.at_level("INFO", logger="keeper.runner"):
        first, second, role = asyncio.run(go())
    assert (first, second, role) == (1, 2, 0)
    standing_by = [r for r in caplog.records if r.getMessage().startswith("standing by")]
    assert len(standing_by) == 1 and standing_by[0].levelname == "INFO"
    assert standby_metrics.role == "leader" and standby_metrics.lease_epoch._value.get() == 2


def test_keeper_run_on_a_sqlite_file_another_keeper_holds_exits_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from keeper.cli import main as keeper_cli

    url = f"sqlite:///{tmp_path / 'keeper.sqlite'}"
    running = Store(url)
    running.take_lease("the-other-keeper", ttl_seconds=20)
    for name in [k for k in os.environ if k.startswith("KEEPER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KEEPER_DB_URL", url)
    monkeypatch.chdir(tmp_path)
    try:
        assert keeper_cli(["run", "--dry-run", "--max-blocks", "1"]) == 2
    finally:
        running.close()
    err = capsys.readouterr().err
    assert "KEEPER_DB_URL: another keeper" in err and "SQLite is single-instance" in err
