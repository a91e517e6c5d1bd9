"""Oracle round guards: each rejection names the guard and the numbers; a good round passes."""

from __future__ import annotations

import pytest

from keeper.core.oracle_guard import (
    FUTURE_TOLERANCE_SECONDS,
    GuardVerdict,
    check_round,
    require_ok,
)
from keeper.core.types import OracleRound
from keeper.errors import OracleRejected

NOW = 1_700_000_000
HEARTBEAT = 3600
PRICE = 3000 * 10**8


def _round(answer: int = PRICE, age: int = 120, ok: bool = True, round_id: int = 42) -> OracleRound:
    return OracleRound(round_id=round_id, answer=answer, updated_at=NOW - age, decimals=8, ok=ok)


def _check(r: OracleRound, previous: int | None = PRICE, max_jump_bps: int = 500) -> GuardVerdict:
    return check_round(r, NOW, HEARTBEAT, () if previous is None else (previous,), max_jump_bps)


def test_accepts_a_fresh_round_near_the_previous_answer() -> None:
    verdict = _check(_round(answer=PRICE + PRICE // 100))  # +1%
    assert verdict.ok
    assert "round 42" in verdict.reason and "120s old" in verdict.reason
    require_ok(verdict)


def test_rejects_failed_feed_call() -> None:
    verdict = _check(_round(ok=False))
    assert not verdict.ok
    assert verdict.reason.startswith("feed call failed") and "round 42" in verdict.reason


@pytest.mark.parametrize("answer", [0, -1, -PRICE])
def test_rejects_non_positive_answer(answer: int) -> None:
    verdict = _check(_round(answer=answer))
    assert not verdict.ok
    assert verdict.reason == f"non-positive: round 42 answer {answer}"


def test_stale_boundary_matches_the_vault() -> None:
    assert _check(_round(age=HEARTBEAT)).ok  # updated_at + heartbeat >= now is still fresh
    verdict = _check(_round(age=3900))
    assert not verdict.ok
    assert verdict.reason == "stale: round 42 is 3900s old, heartbeat 3600s"


def test_rejects_round_from_the_future_beyond_tolerance() -> None:
    assert _check(_round(age=-FUTURE_TOLERANCE_SECONDS)).ok
    verdict = _check(_round(age=-(FUTURE_TOLERANCE_SECONDS + 5)))
    assert not verdict.ok
    assert verdict.reason.startswith("future: round 42")
    assert f"{FUTURE_TOLERANCE_SECONDS + 5}s ahead" in verdict.reason
    assert not check_round(_round(age=-5), NOW, HEARTBEAT, (), 500, future_tolerance=0).ok


def test_rejects_a_jump_beyond_max_bps_in_both_directions() -> None:
    exactly_5_pct = PRICE + PRICE * 500 // 10_000
    assert _check(_round(answer=exactly_5_pct)).ok  # the limit itself passes
    up = _check(_round(answer=exactly_5_pct + 1))
    assert not up.ok and up.reason.startswith("jump: round 42")
    assert f"previous {PRICE}, max 500 bps" in up.reason
    down = _check(_round(answer=PRICE * 9 // 10))
    assert not down.ok
    assert "1000.0 bps" in down.reason


def test_no_previous_answer_skips_the_jump_check() -> None:
    assert _check(_round(answer=PRICE * 3), previous=None).ok


def test_order_of_guards_reports_the_most_basic_failure() -> None:
    # failed call beats everything; a stale non-positive answer reports non-positive
    assert _check(_round(answer=-1, age=99_999, ok=False)).reason.startswith("feed call failed")
    assert _check(_round(answer=-1, age=99_999)).reason.startswith("non-positive")
    assert _check(_round(answer=PRICE * 2, age=99_999)).reason.startswith("stale")


def test_require_ok_raises_oracle_rejected_with_the_reason() -> None:
    with pytest.raises(OracleRejected, match="stale: round 42 is 3900s old"):
        require_ok(_check(_round(age=3900)))


def test_a_round_near_any_reference_passes_and_the_nearest_is_named() -> None:
    glitch, normal = PRICE * 3 // 2, PRICE
    # back from a glitch: far from the glitch (the previous round), near the last accepted
    assert check_round(_round(answer=normal), NOW, HEARTBEAT, (glitch, normal), 500).ok
    far = check_round(_round(answer=PRICE * 2), NOW, HEARTBEAT, (glitch, normal), 500)
    assert not far.ok and f"from previous {glitch}" in far.reason  # the nearer reference


def test_a_round_inside_the_inclusion_margin_is_stale_already() -> None:
    near_expiry = _round(age=HEARTBEAT - 10)
    assert check_round(near_expiry, NOW, HEARTBEAT, (PRICE,), 500).ok  # the vault's own rule
    verdict = check_round(near_expiry, NOW, HEARTBEAT, (PRICE,), 500, stale_margin=24)
    assert not verdict.ok
    assert verdict.reason == (
        f"stale: round 42 is {HEARTBEAT - 10}s old, heartbeat {HEARTBEAT}s "
        "less a 24s margin for inclusion"
    )
