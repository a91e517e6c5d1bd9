"""``Store``: the keeper's persistence, one short transaction per call (SQLAlchemy 2, sync).

Any SQLAlchemy URL works; SQLite (a file) is the default, PostgreSQL is what several keeper
instances share. Writes that claim a nonce or move a journal entry are conditional, so two
instances cannot both act on the same entry (see ``keeper.store.journal``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError

from keeper.core.types import BlockRef, Decision
from keeper.errors import ConfigError, DatabaseUnavailable, JournalConflict
from keeper.store import (
    blocks,
    decisions,
    journal,
    lease,
    markers,
    meta,
    migrations,
    nonces,
    tables,
)
from keeper.store.records import (
    IN_FLIGHT_STATES,
    ON_CHAIN_STATES,
    OPEN_STATES,
    JournalEntry,
    JournalState,
    Markers,
    SignedTx,
    TxIntent,
    TxKind,
)

DEFAULT_BLOCK_HISTORY = 256
DEFAULT_DECISION_HISTORY = 50_400  # about a week of 12 s blocks


class Store:
    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        block_history: int = DEFAULT_BLOCK_HISTORY,
        decision_history: int = DEFAULT_DECISION_HISTORY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._block_history = block_history
        self._decision_history = decision_history
        self._clock = clock
        self._fence: lease.Fence | None = None
        self._sqlite_lock: lease.SqliteLock | None = None
        with database_errors(url):
            self._engine = _engine(url, schema)
            migrations.ensure_current(self._engine)

    def close(self) -> None:
        self._engine.dispose()
        if self._sqlite_lock is not None:
            self._sqlite_lock.release()

    def bind_chain(self, chain_id: int) -> None:
        """Tie the database to ``chain_id`` (first use) or refuse another chain (ConfigError)."""
        with self._write() as conn:
            meta.bind_chain(conn, chain_id)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A read transaction."""
        with _unavailable(), self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction: once this instance holds the leader lease, its first
        statement checks the lease epoch (``LeaseLost`` if another instance took over), in
        the same transaction as the write it guards."""
        with _unavailable(), self._engine.begin() as conn:
            if self._fence is not None:
                lease.check(conn, self._fence)
            yield conn

    # --- the leader lease ---------------------------------------------------------------

    def take_lease(self, holder: str, ttl_seconds: float) -> lease.Held | lease.Standby:
        """Renew or take the leader lease for ``holder``; every later write is fenced by it.

        SQLite: the first call also takes the database file's lock (``ConfigError`` when
        another keeper runs on the file: SQLite is single-instance)."""
        sole = self._engine.dialect.name == "sqlite"
        if sole and self._sqlite_lock is None:
            database = self._engine.url.database
            if database and database != ":memory:":
                self._sqlite_lock = lease.SqliteLock(Path(database))
                self._sqlite_lock.acquire()
        with self._engine.begin() as conn:  # the holder of the SQLite lock is the only keeper
            state = lease.acquire(conn, lease.LEASE_NAME, holder, ttl_seconds, sole=sole)
        if isinstance(state, lease.Held):
            self._fence = lease.Fence(lease.LEASE_NAME, holder, state.epoch)
        else:
            self._fence = None
        return state

    def lease_holder(self) -> str | None:
        """Who holds the leader lease now (``holder`` at epoch ``n``); None if nobody does."""
        with self._tx() as conn:
            return lease.describe(conn)

    def bound_chain(self) -> int | None:
        """The chain the database journals; None before the first keeper bound it."""
        with self._tx() as conn:
            return meta.bound_chain(conn)

    def probe_write(self) -> None:
        """Write a row and roll it back: ``ConfigError`` naming KEEPER_DB_URL if the database
        is read-only or locked."""
        with database_errors(self.url), self._engine.connect() as conn, conn.begin() as tx:
            conn.execute(tables.meta.insert().values(key="doctor_probe", value="1"))
            tx.rollback()

    def check_lease(self) -> None:
        """``LeaseLost`` unless this instance still holds the lease (before a broadcast)."""
        if self._fence is not None:
            with self._tx() as conn:
                lease.check(conn, self._fence)

    def release_lease(self) -> None:
        """Give the lease up (clean stop): a standby takes over at once."""
        if self._fence is not None:
            with self._engine.begin() as conn:
                lease.release(conn, self._fence)
            self._fence = None

    # --- processed blocks -------------------------------------------------------------

    def record_block(self, block: BlockRef) -> None:
        with self._write() as conn:
            blocks.record(conn, block, self._block_history)

    def last_block(self) -> BlockRef | None:
        """The newest processed block; None when nothing is stored yet (not a failure)."""
        with self._tx() as conn:
            return blocks.last(conn)

    def block_at(self, number: int) -> BlockRef | None:
        with self._tx() as conn:
            return blocks.block_at(conn, number)

    def recent_blocks(self, count: int) -> list[BlockRef]:
        """The newest ``count`` processed blocks, oldest first."""
        with self._tx() as conn:
            return blocks.recent(conn, count)

    def forget_blocks_from(self, number: int) -> None:
        """A reorg: blocks at or above ``number``, and their decisions, are forgotten."""
        with self._write() as conn:
            blocks.forget_from(conn, number)
            decisions.forget_from(conn, number)

    # --- decisions --------------------------------------------------------------------

    def commit_block(
        self,
        block: BlockRef,
        items: Sequence[Decision],
        vault_markers: Mapping[str, Markers] | None = None,
        backfilled: Sequence[BlockRef] = (),
    ) -> None:
        """One tick's record in one transaction: the blocks backfilled before ``block``,
        ``block`` itself, its decisions and the governance markers that changed."""
        for d in items:
            if d.block_number != block.number:
                raise JournalConflict(
                    f"decision for {d.vault} is for block {d.block_number}, not {block.number}"
                )
        now = self._clock()
        with self._write() as conn:
            for earlier in backfilled:
                blocks.record(conn, earlier, self._block_history)
            blocks.record(conn, block, self._block_history)
            decisions.save(conn, items)
            decisions.prune_below(conn, block.number - self._decision_history)
            for vault, m in (vault_markers or {}).items():
                markers.put(conn, vault, m.request_nonce, m.params_version, now)

    def save_decisions(self, items: Sequence[Decision]) -> None:
        with self._write() as conn:
            decisions.save(conn, items)

    def latest_decisions(self) -> list[Decision]:
        with self._tx() as conn:
            return decisions.latest(conn)

    def decisions_for_block(self, number: int) -> list[Decision]:
        with self._tx() as conn:
            return decisions.for_block(conn, number)

    # --- governance markers -------------------------------------------------------------

    def get_markers(self, vault: str) -> Markers | None:
        """The markers last acted on; None when the keeper never acted on ``vault``."""
        with self._tx() as conn:
            return markers.get(conn, vault)

    def set_markers(self, vault: str, request_nonce: int, params_version: int) -> None:
        with self._write() as conn:
            markers.put(conn, vault, request_nonce, params_version, self._clock())

    # --- journal: writes ------------------------------------------------------------------

    def create_intent(self, intent: TxIntent) -> JournalEntry:
        """Journal a new intent and claim its vaults (``JournalConflict`` if one is in flight)."""
        try:
            with self._write() as conn:
                entry_id = journal.create_intent(conn, intent, self._clock())
                return journal.get(conn, entry_id)
        except IntegrityError as exc:  # another instance claimed a vault at the same moment
            raise JournalConflict(f"a rebalance is already in flight for {intent.vaults}") from exc

    def claim_nonce(self, entry_id: int) -> int:
        with self._write() as conn:
            return nonces.claim(conn, entry_id, self._clock())

    def journal_and_sign(
        self, intent: TxIntent, sign: Callable[[int, frozenset[str]], SignedTx]
    ) -> JournalEntry:
        """In ONE transaction (one commit before the broadcast, the commit that must be
        durable): claim the intent's vaults and journal it, claim the lowest free nonce for
        it, sign at that nonce (``sign(nonce, hashes the journal already holds there)``) and
        journal the bytes (``signed``). Nothing of it is kept when any step fails
        (``JournalConflict`` when a vault is in flight)."""
        try:
            with self._write() as conn:
                entry_id = journal.create_intent(conn, intent, self._clock())
                nonce = nonces.claim(conn, entry_id, self._clock(), sender=intent.sender)
                taken = frozenset(
                    e.tx_hash for e in journal.for_nonce(conn, intent.sender, nonce) if e.tx_hash
                )
                return journal.mark_signed(conn, entry_id, sign(nonce, taken), self._clock())
        except IntegrityError as exc:  # another instance claimed a vault at the same moment
            raise JournalConflict(f"a rebalance is already in flight for {intent.vaults}") from exc

    def mark_signed(self, entry_id: int, signed: SignedTx) -> JournalEntry:
        with self._write() as conn:
            return journal.mark_signed(conn, entry_id, signed, self._clock())

    def add_successor(
        self, old_id: int, kind: TxKind, to: str, value_wei: int, data: bytes, signed: SignedTx
    ) -> JournalEntry:
        """Journal a signed same-nonce replacement or cancel of a ``sent`` entry."""
        with self._write() as conn:
            new_id = journal.insert_successor(
                conn, old_id, kind, to, value_wei, data, signed, self._clock()
            )
            return journal.get(conn, new_id)

    def mark_sent(self, entry_id: int, at_block: int) -> JournalEntry:
        with self._write() as conn:
            return journal.mark_sent(conn, entry_id, at_block, self._clock())

    def mark_mined(
        self, entry_id: int, block_number: int, block_hash: str, status: int
    ) -> JournalEntry:
        with self._write() as conn:
            return journal.mark_mined(
                conn, entry_id, block_number, block_hash, status, self._clock()
            )

    def mark_dropped(self, entry_id: int, reason: str) -> JournalEntry:
        with self._write() as conn:
            return journal.mark_dropped(conn, entry_id, reason, self._clock())

    def mark_failed(self, entry_id: int, reason: str) -> JournalEntry:
        """The entry never reached the chain; its nonce is given back unless another entry
        of the group may be on chain with it."""
        now = self._clock()
        with self._write() as conn:
            entry = journal.mark_failed(conn, entry_id, reason, now)
            if entry.nonce is not None:
                group = journal.for_nonce(conn, entry.sender, entry.nonce)
                if not any(e.state in ON_CHAIN_STATES for e in group):
                    nonces.give_back(conn, entry.sender, entry.nonce, now)
            return entry

    def mark_reorged(self, entry_id: int, at_block: int) -> JournalEntry:
        with self._write() as conn:
            return journal.mark_reorged(conn, entry_id, at_block, self._clock())

    # --- journal: reads -------------------------------------------------------------------

    def entry(self, entry_id: int) -> JournalEntry:
        with self._tx() as conn:
            return journal.get(conn, entry_id)

    def entries_in(
        self, states: Iterable[JournalState], sender: str | None = None
    ) -> list[JournalEntry]:
        with self._tx() as conn:
            return journal.in_states(conn, states, sender)

    def open_entries(self, sender: str | None = None) -> list[JournalEntry]:
        """Entries signed or sent and not settled yet."""
        return self.entries_in(OPEN_STATES, sender)

    def entries_for_nonce(self, sender: str, nonce: int) -> list[JournalEntry]:
        with self._tx() as conn:
            return journal.for_nonce(conn, sender, nonce)

    def mined_since(self, block_number: int) -> list[JournalEntry]:
        with self._tx() as conn:
            return journal.mined_since(conn, block_number)

    def vault_in_flight(self, vault: str) -> bool:
        """True while a rebalance covering ``vault`` is journaled and not settled."""
        with self._tx() as conn:
            return bool(journal.claimed_vaults(conn, [vault]))

    def vaults_in_flight(self) -> frozenset[str]:
        with self._tx() as conn:
            return frozenset(journal.claimed_vaults(conn))

    def in_flight(self, sender: str | None = None) -> list[JournalEntry]:
        return self.entries_in(IN_FLIGHT_STATES, sender)

    # --- nonces ---------------------------------------------------------------------------

    def next_nonce(self, sender: str) -> int | None:
        """The next fresh nonce; None before the first resync (not a failure)."""
        with self._tx() as conn:
            return nonces.peek(conn, sender)

    def free_nonces(self, sender: str) -> list[int]:
        with self._tx() as conn:
            return nonces.free_list(conn, sender)

    def resync_nonces(self, sender: str, chain_next: int) -> int:
        with self._write() as conn:
            return nonces.resync(conn, sender, chain_next, self._clock())


def upgrade_database(url: str, schema: str | None = None) -> tuple[str | None, str]:
    """``keeper db upgrade``: migrate the database to the newest revision (revisions before
    and after); errors name KEEPER_DB_URL."""
    with database_errors(url):
        engine = _engine(url, schema)
        try:
            return migrations.upgrade(engine)
        finally:
            engine.dispose()


SUPPORTED = "sqlite:///keeper.sqlite (one instance) or postgresql+psycopg://user@host:5432/db"


def check_url(url: str) -> URL:
    """The parsed URL of a database the keeper supports (``ConfigError`` naming the setting)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"KEEPER_DB_URL: {url!r} is not a database URL; use {SUPPORTED}"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        raise ConfigError(
            "KEEPER_DB_URL: postgres:// is not a SQLAlchemy URL scheme; write "
            "postgresql+psycopg://... (the psycopg 3 driver the keeper ships with)"
        )
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"KEEPER_DB_URL: {backend} is not supported; use {SUPPORTED}")
    if backend == "postgresql" and parsed.get_driver_name() not in ("psycopg", "psycopg2"):
        raise ConfigError(
            f"KEEPER_DB_URL: driver {parsed.get_driver_name()!r} is not installed; write "
            "postgresql+psycopg://..."
        )
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise ConfigError(
                f"KEEPER_DB_URL: cannot create the SQLite file {parsed.database}: the folder "
                f"{folder} does not exist"
            )
    return parsed


@contextmanager
def _unavailable() -> Iterator[None]:
    """A connection lost mid-use is ``DatabaseUnavailable`` (retried on the next block)."""
    try:
        yield
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(f"database unavailable: {reason}") from exc


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Any failure to reach or use the database as one ``ConfigError`` naming KEEPER_DB_URL
    (without the password)."""
    try:
        yield
    except ConfigError:
        raise
    except OperationalError as exc:
        shown = _shown(url)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if "locked" in reason:
            reason += " (another process holds the SQLite file: is a keeper running on it?)"
        raise ConfigError(f"KEEPER_DB_URL: cannot use the database {shown}: {reason}") from None
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ConfigError(f"KEEPER_DB_URL: database error at {_shown(url)}: {reason}") from None


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def _engine(url: str, schema: str | None) -> Engine:
    parsed = check_url(url)
    if parsed.get_backend_name() == "sqlite":  # ?timeout=S: seconds to wait for a lock
        timeout = float(str(parsed.query.get("timeout", "30")))
        engine = create_engine(parsed, connect_args={"timeout": timeout})
        _serialise_sqlite(engine)
    else:
        engine = create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5})
        _bound_idle_transactions(engine)
    if schema is None:
        return engine
    if engine.dialect.name == "sqlite":
        raise ConfigError("KEEPER_DB_SCHEMA: a schema needs a server database, not SQLite")
    if not schema.replace("_", "").isalnum():
        raise ConfigError(f"KEEPER_DB_SCHEMA: {schema!r} must be letters, digits and _")
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return engine.execution_options(schema_translate_map={None: schema})


IDLE_IN_TRANSACTION_SECONDS = 10


def _bound_idle_transactions(engine: Engine) -> None:
    """PostgreSQL ends a session idle inside a transaction for 10 s (the keeper's take
    milliseconds): a process frozen mid-transaction (SIGSTOP, a VM pause) cannot hold the
    lease row's lock, and so block the standby's takeover, for longer."""

    @event.listens_for(engine, "connect")
    def _set_timeout(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(
                f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_SECONDS}s'"
            )
        dbapi_connection.commit()


def _serialise_sqlite(engine: Engine) -> None:
    """Start every SQLite transaction with ``BEGIN IMMEDIATE``: it takes the write lock up
    front, so two processes on one file queue (``timeout``) instead of failing on a lock
    upgrade half-way through a read-then-update."""

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        # Write-ahead log: a commit appends to the log (one fsync, synchronous=FULL keeps
        # every commit durable across a power cut) instead of rewriting pages through a
        # rollback journal; readers never block the writer.
        # https://www.sqlite.org/wal.html
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=FULL")

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
