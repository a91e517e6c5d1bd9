"""Reorg and gap handling of the pure chain tracker against a fake chain."""

from __future__ import annotations

import pytest

from keeper.core.chaintrack import jump, link, missing_parent
from keeper.core.types import BlockRef
from keeper.errors import ReorgTooDeep


def chain(start: int, end: int, fork: str = "a", parent_fork: str | None = None) -> list[BlockRef]:
    """Blocks start..end whose hashes carry a fork label; the first links to parent_fork's block."""
    blocks = []
    for n in range(start, end + 1):
        parent_label = (parent_fork or fork) if n == start else fork
        blocks.append(BlockRef(n, f"{fork}{n}", f"{parent_label}{n - 1}", 1000 + 12 * n))
    return blocks


def fetch_until_linked(known: list[BlockRef], canonical: dict[int, BlockRef], head: BlockRef):
    segment = [head]
    fetched = 0
    while (need := missing_parent(known, segment, max_depth=64)) is not None:
        segment.insert(0, canonical[need])
        fetched += 1
    return link(known, segment), fetched


def test_next_block_extends_the_chain() -> None:
    known = chain(1, 10)
    update, fetched = fetch_until_linked(known, {}, chain(11, 11)[0])
    assert fetched == 0
    assert [b.number for b in update.added] == [11]
    assert not update.reorg


def test_gap_is_backfilled_in_order() -> None:
    known = chain(1, 10)
    canonical = {b.number: b for b in chain(1, 15)}
    update, fetched = fetch_until_linked(known, canonical, canonical[15])
    assert fetched == 4
    assert [b.number for b in update.added] == [11, 12, 13, 14, 15]
    assert update.unverified_gap is None


def test_reorg_replaces_the_blocks_above_the_fork_point() -> None:
    known = chain(1, 10)
    canonical = {b.number: b for b in chain(1, 7) + chain(8, 11, fork="b", parent_fork="a")}
    update, fetched = fetch_until_linked(known, canonical, canonical[11])
    assert update.reorg
    assert [b.number for b in update.dropped] == [10, 9, 8]
    assert [b.hash for b in update.added] == ["b8", "b9", "b10", "b11"]
    assert fetched == 3


def test_same_height_reorg() -> None:
    known = chain(1, 10)
    canonical = {b.number: b for b in chain(1, 9) + chain(10, 10, fork="b", parent_fork="a")}
    update, _ = fetch_until_linked(known, canonical, canonical[10])
    assert [b.hash for b in update.dropped] == ["a10"]
    assert [b.hash for b in update.added] == ["b10"]


def test_head_going_back_to_a_known_block_drops_the_blocks_above() -> None:
    known = chain(1, 10)
    update, _ = fetch_until_linked(known, {}, known[7])  # block 8 again
    assert update.added == ()
    assert update.head is None
    assert [b.number for b in update.dropped] == [10, 9]


def test_duplicate_head_changes_nothing() -> None:
    known = chain(1, 10)
    update, _ = fetch_until_linked(known, {}, known[-1])
    assert update.added == () and update.dropped == ()


def test_reorg_deeper_than_history_is_refused() -> None:
    known = chain(1, 10)
    canonical = {b.number: b for b in chain(0, 11, fork="b")}
    with pytest.raises(ReorgTooDeep):
        fetch_until_linked(known, canonical, canonical[11])


def test_reorg_deeper_than_max_depth_is_refused() -> None:
    known = chain(1, 100)
    canonical = {b.number: b for b in chain(1, 20) + chain(21, 101, fork="b", parent_fork="a")}
    with pytest.raises(ReorgTooDeep):
        fetch_until_linked(known, canonical, canonical[101])


def test_first_head_is_accepted_as_is() -> None:
    update, fetched = fetch_until_linked([], {}, chain(50, 50)[0])
    assert fetched == 0 and [b.number for b in update.added] == [50]


def test_jump_reports_the_unverified_gap() -> None:
    known = chain(1, 10)
    update = jump(known, chain(500, 500)[0])
    assert update.unverified_gap == (11, 499)
    assert [b.number for b in update.added] == [500]


def test_non_contiguous_segment_is_a_bug_not_a_chain() -> None:
    with pytest.raises(ValueError):
        link(chain(1, 3), [chain(4, 4)[0], chain(6, 6)[0]])
