"""Guards on a Chainlink-style oracle round before the keeper prices anything with it.

A round is rejected when the feed call failed, the answer is not positive, the round is
stale (older than the heartbeat, the same rule as the vault: fresh iff
``updated_at + heartbeat >= now``), it claims to come from the future, or it is further than
``max_jump_bps`` from EVERY reference answer it is given. The keeper gives two: the previous
round's answer (a genuine move is accepted once the next round confirms it) and the last
accepted answer (a feed coming back from a glitch is accepted at once). Pure: ``now`` is
passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from keeper.core.types import OracleRound
from keeper.errors import OracleRejected

FUTURE_TOLERANCE_SECONDS: Final = 15
"""How far ahead of ``now`` an ``updated_at`` may be (clock skew, one block) and still pass."""


@dataclass(frozen=True)
class GuardVerdict:
    ok: bool
    reason: str  # names the guard and the numbers


def _jump_bps(answer: int, previous: int) -> float:
    return abs(answer - previous) * 10_000 / previous


def check_round(
    round: OracleRound,
    now: int,
    heartbeat: int,
    references: Sequence[int],
    max_jump_bps: int,
    future_tolerance: int = FUTURE_TOLERANCE_SECONDS,
    stale_margin: int = 0,
) -> GuardVerdict:
    """Accept or reject ``round`` at time ``now`` (unix seconds).

    ``references``: answers the round may not jump away from all at once (empty, or none
    positive: no jump check). The jump test is exact integer arithmetic: a reference ``r``
    is exceeded iff ``|answer - r| * 10000 > max_jump_bps * r``. ``stale_margin``: seconds
    before the heartbeat runs out from which a round counts as stale already (a transaction
    sent now is mined a block or two later, when the vault would find it stale and revert).
    """
    rid = round.round_id
    if not round.ok:
        return GuardVerdict(False, f"feed call failed: round {rid} could not be read")
    if round.answer <= 0:
        return GuardVerdict(False, f"non-positive: round {rid} answer {round.answer}")
    age = now - round.updated_at
    if -age > future_tolerance:
        return GuardVerdict(
            False,
            f"future: round {rid} updated_at {round.updated_at} is {-age}s ahead of now {now}, "
            f"tolerance {future_tolerance}s",
        )
    if age > heartbeat - stale_margin:
        margin = f" less a {stale_margin}s margin for inclusion" if stale_margin else ""
        return GuardVerdict(
            False, f"stale: round {rid} is {age}s old, heartbeat {heartbeat}s{margin}"
        )
    positive = [r for r in references if r > 0]
    if positive and all(abs(round.answer - r) * 10_000 > max_jump_bps * r for r in positive):
        nearest = min(positive, key=lambda r: _jump_bps(round.answer, r))
        return GuardVerdict(
            False,
            f"jump: round {rid} answer {round.answer} is "
            f"{_jump_bps(round.answer, nearest):.1f} bps from previous "
            f"{nearest}, max {max_jump_bps} bps",
        )
    return GuardVerdict(True, f"ok: round {rid} answer {round.answer}, {age}s old")


def require_ok(verdict: GuardVerdict) -> None:
    """Raise :class:`keeper.errors.OracleRejected` with the verdict's reason if it is not ok."""
    if not verdict.ok:
        raise OracleRejected(verdict.reason)
