"""Processed blocks: a bounded window of the canonical chain as the keeper saw it."""

from __future__ import annotations

from sqlalchemy import Connection, RowMapping, delete, func, select

from keeper.core.types import BlockRef
from keeper.errors import JournalConflict
from keeper.store.sql import insert_ignore
from keeper.store.tables import blocks


def _ref(row: RowMapping) -> BlockRef:
    return BlockRef(
        number=int(row["number"]),
        hash=str(row["hash"]),
        parent_hash=str(row["parent_hash"]),
        timestamp=int(row["timestamp"]),
        base_fee_wei=int(row["base_fee_wei"]),
    )


def block_at(conn: Connection, number: int) -> BlockRef | None:
    row = conn.execute(select(blocks).where(blocks.c.number == number)).mappings().first()
    return None if row is None else _ref(row)


def record(conn: Connection, block: BlockRef, history: int) -> None:
    """Store ``block`` and drop blocks more than ``history`` below the newest.

    Recording the same block again is a no-op, also when another instance records it at the
    same moment (the insert does nothing on a conflict); a different hash at a stored height
    is a ``JournalConflict`` (call ``forget_from`` for a reorg first).
    """
    inserted = insert_ignore(
        conn,
        blocks,
        {
            "number": block.number,
            "hash": block.hash,
            "parent_hash": block.parent_hash,
            "timestamp": block.timestamp,
            "base_fee_wei": block.base_fee_wei,
        },
    )
    if not inserted:
        stored = block_at(conn, block.number)
        if stored is not None and stored.hash != block.hash:
            raise JournalConflict(
                f"block {block.number} is stored with hash {stored.hash}, not {block.hash}: "
                "forget the reorged blocks first"
            )
        return
    newest = conn.execute(select(func.max(blocks.c.number))).scalar_one()
    conn.execute(delete(blocks).where(blocks.c.number <= int(newest) - history))


def last(conn: Connection) -> BlockRef | None:
    row = conn.execute(select(blocks).order_by(blocks.c.number.desc()).limit(1)).mappings().first()
    return None if row is None else _ref(row)


def recent(conn: Connection, count: int) -> list[BlockRef]:
    """The newest ``count`` stored blocks, oldest first."""
    rows = conn.execute(select(blocks).order_by(blocks.c.number.desc()).limit(count)).mappings()
    return [_ref(row) for row in reversed(list(rows))]


def forget_from(conn: Connection, number: int) -> int:
    """Delete blocks at or above ``number``; returns how many."""
    return conn.execute(delete(blocks).where(blocks.c.number >= number)).rowcount
