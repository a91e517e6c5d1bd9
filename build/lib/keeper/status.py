"""``keeper status``: what an operator asks first, read from the store alone (no node needed).

The last processed block, each vault's latest decision (delta, deviation, band and why), and
every transaction still in flight (state, nonce, fees, how many blocks it has waited).
"""

from __future__ import annotations

from collections.abc import Sequence

from keeper.config import GWEI
from keeper.core.types import BlockRef, Decision
from keeper.store import JournalEntry, Store
from keeper.store.records import IN_FLIGHT_STATES


def render(store: Store) -> str:
    last = store.last_block()
    in_flight = sorted(store.entries_in(IN_FLIGHT_STATES), key=lambda e: e.id)
    return "\n".join(
        (
            _last_block(last),
            "",
            *_decisions(store.latest_decisions()),
            "",
            *_in_flight(in_flight, last.number if last else None),
        )
    )


def _last_block(last: BlockRef | None) -> str:
    if last is None:
        return "no block processed yet"
    return f"last processed block {last.number} ({last.hash})"


def _decisions(decisions: Sequence[Decision]) -> list[str]:
    if not decisions:
        return ["no decisions stored yet"]
    header = (
        f"{'vault':<44} {'block':>8} {'action':<10} {'delta':>10} {'deviation':>10} "
        f"{'band':>8}  why"
    )
    rows = [
        f"{d.vault:<44} {d.block_number:>8} {d.action.value:<10} {d.delta:>10.4f} "
        f"{d.deviation:>10.4f} {d.band:>8.4f}  {d.reason}"
        for d in sorted(decisions, key=lambda d: d.vault)
    ]
    return [header, "-" * len(header), *rows]


def _in_flight(entries: Sequence[JournalEntry], head: int | None) -> list[str]:
    if not entries:
        return ["no transaction in flight"]
    header = (
        f"{'entry':>6} {'kind':<10} {'state':<7} {'nonce':>6} {'max fee gwei':>12} "
        f"{'waited':>7}  vaults / tx"
    )
    rows = [_entry_row(e, head) for e in entries]
    return [f"transactions in flight: {len(entries)}", header, "-" * len(header), *rows]


def _entry_row(entry: JournalEntry, head: int | None) -> str:
    nonce = "-" if entry.nonce is None else str(entry.nonce)
    fee = "-" if entry.max_fee_wei is None else f"{entry.max_fee_wei / GWEI:.2f}"
    waited = (
        "-"
        if entry.sent_at_block is None or head is None
        else f"{max(head - entry.sent_at_block, 0)} blk"
    )
    what = ", ".join(entry.vaults) or entry.to
    tx = f"  {entry.tx_hash}" if entry.tx_hash else ""
    return (
        f"{entry.id:>6} {entry.kind.value:<10} {entry.state.value:<7} {nonce:>6} {fee:>12} "
        f"{waited:>7}  {what}{tx}"
    )
