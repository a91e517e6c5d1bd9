"""Decision logs (issue 10 item 15): a skip warns when it starts or its reason changes, not
every block while it lasts; rebalances log at INFO."""

from __future__ import annotations

import logging

import pytest

from keeper.core.types import Action, Decision
from keeper.pipeline import _log_decisions


def skip(block: int, reason: str = "paused by governance") -> Decision:
    return Decision(
        vault="0xV", block_number=block, block_hash="0x", action=Action.SKIP, reason=reason
    )


def test_a_lasting_skip_warns_once_and_again_when_its_reason_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    skips: dict[str, str] = {}
    blocks = [skip(1), skip(2), skip(3), skip(4, "oracle stale"), skip(5, "oracle stale")]
    hold = Decision(vault="0xV", block_number=6, block_hash="0x", action=Action.HOLD, reason="")
    with caplog.at_level(logging.DEBUG, logger="keeper.pipeline"):
        for d in [*blocks, hold, skip(7)]:
            _log_decisions([d], set(), skips, dry_run=False)
    levels = [r.levelno for r in caplog.records]
    warn, debug = logging.WARNING, logging.DEBUG
    # the hold in between ends the skip: the next one warns again
    assert levels == [warn, debug, debug, warn, debug, warn]
