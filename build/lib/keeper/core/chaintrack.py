"""Linking new heads to the blocks already processed: advance, gap, reorg (pure).

The I/O layer (``keeper.chain.blocks``) fetches a new head, then asks
``missing_parent`` which ancestor it still needs, fetches it, and repeats until
``link`` can place the new segment on the known chain. Nothing here talks to a node.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from keeper.core.types import BlockRef
from keeper.errors import ReorgTooDeep


@dataclass(frozen=True)
class ChainUpdate:
    """How the canonical chain changed.

    ``added``: new canonical blocks, oldest first; ``dropped``: blocks no longer canonical,
    newest first."""

    added: tuple[BlockRef, ...]
    dropped: tuple[BlockRef, ...] = ()
    unverified_gap: tuple[int, int] | None = None  # (first, last) numbers not fetched

    @property
    def reorg(self) -> bool:
        return bool(self.dropped)

    @property
    def head(self) -> BlockRef | None:
        """The new tip, or None when the update only removed blocks or changed nothing."""
        return self.added[-1] if self.added else None


def _known_hash(known: Sequence[BlockRef], number: int) -> str | None:
    if not known:
        return None
    offset = number - known[0].number
    if 0 <= offset < len(known) and known[offset].number == number:
        return known[offset].hash
    for block in known:  # known may have holes after an unverified gap
        if block.number == number:
            return block.hash
    return None


def missing_parent(
    known: Sequence[BlockRef], segment: Sequence[BlockRef], max_depth: int
) -> int | None:
    """The number of the next ancestor to fetch, or None when ``segment`` can be linked.

    ``known`` is the processed window (ascending), ``segment`` the fetched new blocks
    (ascending, contiguous, ending at the new head). Raises ``ReorgTooDeep`` when the
    fork point lies deeper than ``max_depth`` blocks below the known tip.
    """
    if not known:
        return None
    first = segment[0]
    if first.number <= known[0].number:
        if _known_hash(known, first.number) == first.hash:
            return None
        raise ReorgTooDeep(
            f"block {first.number} differs from the processed chain at or below the oldest "
            f"kept block {known[0].number}"
        )
    parent = _known_hash(known, first.number - 1)
    if parent == first.parent_hash:
        return None
    tip = known[-1]
    if first.number - 1 > tip.number:
        return first.number - 1  # a gap: fetch the block below
    if tip.number - (first.number - 1) >= max_depth:
        raise ReorgTooDeep(f"reorg deeper than {max_depth} blocks below {tip.number}")
    return first.number - 1  # a fork: walk back until the parents agree


def link(known: Sequence[BlockRef], segment: Sequence[BlockRef]) -> ChainUpdate:
    """Place a fetched segment on the known chain (call once ``missing_parent`` is None)."""
    _check_contiguous(segment)
    if not known:
        return ChainUpdate(added=tuple(segment))
    added = tuple(b for b in segment if _known_hash(known, b.number) != b.hash)
    # Everything known above the fork point, or above a head that went back, is gone.
    first_gone = added[0].number if added else segment[-1].number + 1
    dropped = tuple(b for b in reversed(known) if b.number >= first_gone)
    return ChainUpdate(added=added, dropped=dropped)


def jump(known: Sequence[BlockRef], head: BlockRef) -> ChainUpdate:
    """Accept ``head`` without fetching the blocks between: the gap is reported, not hidden."""
    tip = known[-1] if known else None
    gap = (tip.number + 1, head.number - 1) if tip and head.number - tip.number > 1 else None
    return ChainUpdate(added=(head,), unverified_gap=gap)


def reanchor(known: Sequence[BlockRef], head: BlockRef) -> ChainUpdate:
    """Give up linking (the fork point is below every kept block): all of them are dropped
    and ``head`` starts the window again."""
    return ChainUpdate(added=(head,), dropped=tuple(reversed(known)))


def _check_contiguous(segment: Sequence[BlockRef]) -> None:
    for older, newer in itertools.pairwise(segment):
        if newer.number != older.number + 1 or newer.parent_hash != older.hash:
            raise ValueError(f"segment not contiguous at block {newer.number}")
