"""Governance markers per vault: the last ``requestNonce`` and ``paramsVersion`` acted on."""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from keeper.store.records import Markers
from keeper.store.sql import insert_ignore
from keeper.store.tables import markers


def get(conn: Connection, vault: str) -> Markers | None:
    row = conn.execute(
        select(markers.c.request_nonce, markers.c.params_version).where(markers.c.vault == vault)
    ).first()
    return None if row is None else Markers(int(row[0]), int(row[1]))


def put(conn: Connection, vault: str, request_nonce: int, params_version: int, now: float) -> None:
    values = {"request_nonce": request_nonce, "params_version": params_version, "updated_at": now}
    if not insert_ignore(conn, markers, {"vault": vault, **values}):
        conn.execute(update(markers).where(markers.c.vault == vault).values(**values))
