"""Decisions: what the keeper decided for each vault in each processed block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, delete, func, select

from keeper.core.types import Action, Decision
from keeper.store.tables import decisions


def _row(decision: Decision) -> dict[str, Any]:
    return {
        "vault": decision.vault,
        "block_number": decision.block_number,
        "block_hash": decision.block_hash,
        "action": decision.action.value,
        "reason": decision.reason,
        "delta": decision.delta,
        "gamma": decision.gamma,
        "band": decision.band,
        "deviation": decision.deviation,
        "urgent": decision.urgent,
        "trade_wei": decision.trade_wei,
        "spot_answer": decision.spot_answer,
    }


def _decision(row: RowMapping) -> Decision:
    return Decision(
        vault=str(row["vault"]),
        block_number=int(row["block_number"]),
        block_hash=str(row["block_hash"]),
        action=Action(row["action"]),
        reason=str(row["reason"]),
        delta=float(row["delta"]),
        gamma=float(row["gamma"]),
        band=float(row["band"]),
        deviation=float(row["deviation"]),
        urgent=bool(row["urgent"]),
        trade_wei=int(row["trade_wei"]),
        spot_answer=int(row["spot_answer"]),
    )


def save(conn: Connection, items: Sequence[Decision]) -> None:
    """Insert decisions; those of a block saved again replace the earlier ones."""
    for number in {d.block_number for d in items}:
        conn.execute(delete(decisions).where(decisions.c.block_number == number))
    if items:
        conn.execute(decisions.insert(), [_row(d) for d in items])


def for_block(conn: Connection, number: int) -> list[Decision]:
    query = select(decisions).where(decisions.c.block_number == number).order_by(decisions.c.id)
    return [_decision(row) for row in conn.execute(query).mappings()]


def latest(conn: Connection) -> list[Decision]:
    """The newest decision of every vault (by block number, then insertion order)."""
    newest = (
        select(decisions.c.vault, func.max(decisions.c.block_number).label("block_number"))
        .group_by(decisions.c.vault)
        .subquery()
    )
    query = (
        select(decisions)
        .join(
            newest,
            and_(
                decisions.c.vault == newest.c.vault,
                decisions.c.block_number == newest.c.block_number,
            ),
        )
        .order_by(decisions.c.vault, decisions.c.id)
    )
    by_vault: dict[str, Decision] = {}
    for row in conn.execute(query).mappings():
        by_vault[str(row["vault"])] = _decision(row)  # the last inserted wins
    return list(by_vault.values())


def forget_from(conn: Connection, number: int) -> None:
    conn.execute(delete(decisions).where(decisions.c.block_number >= number))


def prune_below(conn: Connection, number: int) -> None:
    conn.execute(delete(decisions).where(decisions.c.block_number < number))
