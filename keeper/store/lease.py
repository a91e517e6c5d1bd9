"""The fenced leader lease: one active keeper per database (per ``KEEPER_DB_SCHEMA``).

One row in ``keeper_lease`` names the holder and an **epoch** that grows on every change of
holder. The leader renews the row before ``expires_at``; a standby takes the row over (epoch
+ 1) once it has expired. Time is the database server's clock (PostgreSQL
``clock_timestamp()``), so the instances' clocks do not have to agree.

The fence: every write transaction of the leader first reads the row ``FOR SHARE`` and
refuses (``LeaseLost``) unless it still holds the lease at its epoch, in the same
transaction as the write. A takeover updates the row ``FOR UPDATE`` and so waits for every
write of the old leader in flight, and every write the old leader attempts afterwards sees
the new epoch: a leader that was paused (SIGSTOP) past its lease cannot claim a nonce or
move a journal entry after it resumes. (The pattern: Kleppmann, "How to do distributed
locking", 2016, fencing tokens.)

SQLite is single-instance: ``keeper run`` holds an exclusive lock on ``<file>.lock`` for its
lifetime, and a second one is refused at start with a message saying so.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, select, text, update

from keeper.errors import ConfigError, LeaseLost
from keeper.store.sql import insert_ignore
from keeper.store.tables import lease

LEASE_NAME = "keeper"


@dataclass(frozen=True)
class Held:
    """This instance leads at ``epoch`` until ``expires_in`` seconds from now."""

    epoch: int
    expires_in: float


@dataclass(frozen=True)
class Standby:
    """Another instance (``holder``) leads; its lease runs out in ``expires_in`` seconds."""

    holder: str
    epoch: int
    expires_in: float


@dataclass(frozen=True)
class Fence:
    """What every write checks: the lease ``name`` held by ``holder`` at ``epoch``."""

    name: str
    holder: str
    epoch: int


def db_now(conn: Connection) -> float:
    """Unix seconds on the database server's clock (this host's for SQLite)."""
    if conn.dialect.name == "postgresql":
        return float(
            conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one()
        )
    return time.time()


def acquire(
    conn: Connection, name: str, holder: str, ttl: float, *, sole: bool = False
) -> Held | Standby:
    """Renew the lease if ``holder`` has it, take it over if it has expired (or at once when
    ``sole``: the caller knows no other instance is alive), else stand by."""
    if conn.dialect.name == "postgresql":  # never wait long behind a frozen leader's write
        conn.execute(text("SET LOCAL lock_timeout = '2s'"))
    insert_ignore(conn, lease, {"name": name, "holder": "", "epoch": 0, "expires_at": 0.0})
    row = conn.execute(select(lease).where(lease.c.name == name).with_for_update()).mappings().one()
    now = db_now(conn)
    epoch = int(row["epoch"])
    if row["holder"] != holder:
        if float(row["expires_at"]) > now and not sole:
            return Standby(str(row["holder"]), epoch, float(row["expires_at"]) - now)
        epoch += 1
    conn.execute(
        update(lease)
        .where(lease.c.name == name)
        .values(holder=holder, epoch=epoch, expires_at=now + ttl)
    )
    return Held(epoch, ttl)


def release(conn: Connection, fence: Fence) -> None:
    """Give the lease up at once (clean shutdown): a standby takes over on its next poll."""
    conn.execute(
        update(lease)
        .where(
            lease.c.name == fence.name, lease.c.holder == fence.holder, lease.c.epoch == fence.epoch
        )
        .values(expires_at=0.0)
    )


def check(conn: Connection, fence: Fence) -> None:
    """``LeaseLost`` unless ``fence`` still holds the lease (row locked ``FOR SHARE`` until
    the end of ``conn``'s transaction, so a takeover waits for this write)."""
    row = (
        conn.execute(select(lease).where(lease.c.name == fence.name).with_for_update(read=True))
        .mappings()
        .first()
    )
    if row is None or row["holder"] != fence.holder or int(row["epoch"]) != fence.epoch:
        now = "nobody" if row is None else f"{row['holder']} at epoch {row['epoch']}"
        raise LeaseLost(
            f"leader lease lost: held by {now}, this instance ({fence.holder}) had epoch "
            f"{fence.epoch}; nothing is written or sent"
        )


def describe(conn: Connection) -> str | None:
    """The holder of an unexpired lease and its epoch, for operators; None if none."""
    row = conn.execute(select(lease).where(lease.c.name == LEASE_NAME)).mappings().first()
    if row is None or not row["holder"] or float(row["expires_at"]) <= db_now(conn):
        return None
    return f"{row['holder']} at epoch {row['epoch']}"


def holder_id() -> str:
    """A name for this process, unique across restarts: host, pid and start time."""
    return f"{os.uname().nodename}:{os.getpid()}:{int(time.time() * 1000) % 10**9}"


class SqliteLock:
    """The exclusive lock of a SQLite keeper database, held for the process's lifetime."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "unknown"
            handle.close()
            raise ConfigError(
                f"KEEPER_DB_URL: another keeper ({other}) is running on "
                f"{self.path.with_suffix('')}; "
                "SQLite is single-instance: stop the other one, or use PostgreSQL to run a standby"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(holder_id())
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
