"""EIP-1559 fee policy: tips from fee history, caps, wait/urgent verdicts, replacement bumps."""

from __future__ import annotations

import pytest

from keeper.core.fees import (
    GWEI,
    FeeHistory,
    FeePolicy,
    FeeQuote,
    SendNow,
    UsualFee,
    WaitForFees,
    bump,
    market_quote,
    priority_fee,
    quote_cancel,
    quote_new,
    quote_replacement,
)
from keeper.errors import ConfigError

POLICY = FeePolicy(
    reward_percentile=50,
    priority_floor_wei=1 * GWEI,
    priority_cap_wei=5 * GWEI,
    max_fee_cap_wei=100 * GWEI,
    emergency_max_fee_cap_wei=300 * GWEI,
)


def history(
    next_base: int, rewards_at_50: list[int], ratios: list[float] | None = None
) -> FeeHistory:
    """A history whose 50th-percentile rewards are given; 10th/90th are half/double."""
    return FeeHistory(
        base_fees=tuple([next_base] * len(rewards_at_50) + [next_base]),
        rewards=tuple((r // 2, r, 2 * r) for r in rewards_at_50),
        percentiles=(10.0, 50.0, 90.0),
        gas_used_ratios=tuple(ratios if ratios is not None else [0.5] * len(rewards_at_50)),
    )


def test_priority_fee_is_the_median_of_the_chosen_percentile() -> None:
    h = history(10 * GWEI, [2 * GWEI, 3 * GWEI, 2 * GWEI + 500, 4 * GWEI, 3 * GWEI])
    assert priority_fee(h, POLICY) == 3 * GWEI
    p90 = FeePolicy(reward_percentile=90, priority_cap_wei=100 * GWEI)
    assert priority_fee(h, p90) == 6 * GWEI


def test_priority_fee_is_clamped_to_floor_and_cap() -> None:
    assert priority_fee(history(GWEI, [1, 2, 3]), POLICY) == POLICY.priority_floor_wei
    assert priority_fee(history(GWEI, [50 * GWEI] * 3), POLICY) == POLICY.priority_cap_wei


def test_empty_blocks_do_not_pull_the_tip_down() -> None:
    h = history(GWEI, [0, 0, 0, 3 * GWEI], ratios=[0.0, 0.0, 0.0, 0.6])
    assert priority_fee(h, POLICY) == 3 * GWEI
    only_empty = history(GWEI, [0, 0], ratios=[0.0, 0.0])
    assert priority_fee(only_empty, POLICY) == POLICY.priority_floor_wei


def test_a_percentile_that_was_not_requested_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        priority_fee(history(GWEI, [GWEI]), FeePolicy(reward_percentile=25))


def test_policy_validation() -> None:
    with pytest.raises(ConfigError):
        FeePolicy(max_fee_cap_wei=10, emergency_max_fee_cap_wei=5)
    with pytest.raises(ConfigError):
        FeePolicy(priority_floor_wei=5, priority_cap_wei=4)


def test_new_quote_has_twice_the_base_fee_as_headroom() -> None:
    verdict = quote_new(history(20 * GWEI, [2 * GWEI] * 3), POLICY, urgent=False)
    assert verdict == SendNow(FeeQuote(42 * GWEI, 2 * GWEI), 20 * GWEI, 100 * GWEI)
    assert market_quote(history(20 * GWEI, [2 * GWEI]), POLICY).max_fee_wei == 42 * GWEI


def test_max_fee_is_clipped_to_the_cap_while_the_base_fee_fits() -> None:
    verdict = quote_new(history(60 * GWEI, [2 * GWEI]), POLICY, urgent=False)
    assert isinstance(verdict, SendNow)
    assert verdict.quote == FeeQuote(100 * GWEI, 2 * GWEI)


def test_non_urgent_work_waits_above_the_cap_urgent_work_goes() -> None:
    h = history(150 * GWEI, [2 * GWEI])
    waiting = quote_new(h, POLICY, urgent=False)
    assert waiting == WaitForFees(150 * GWEI, 2 * GWEI, 100 * GWEI, "next base fee above the cap")
    urgent = quote_new(h, POLICY, urgent=True)
    assert urgent == SendNow(FeeQuote(300 * GWEI, 2 * GWEI), 150 * GWEI, 300 * GWEI)


def test_urgent_work_waits_above_the_emergency_cap() -> None:
    verdict = quote_new(history(400 * GWEI, [2 * GWEI]), POLICY, urgent=True)
    assert isinstance(verdict, WaitForFees) and verdict.cap_wei == 300 * GWEI


def test_the_minimum_tip_must_fit_under_the_cap() -> None:
    just_below = quote_new(history(99 * GWEI, [GWEI]), POLICY, urgent=False)
    assert isinstance(just_below, SendNow) and just_below.quote == FeeQuote(100 * GWEI, GWEI)
    above = quote_new(history(99 * GWEI + 1, [GWEI]), POLICY, urgent=False)
    assert isinstance(above, WaitForFees)


@pytest.mark.parametrize(
    ("fee", "bumped"),
    [
        (0, 1),
        (1, 2),  # ceil(1.125) = 2
        (7, 8),  # ceil(7.875) = 8
        (8, 9),  # exactly 9
        (1000, 1125),
        (1001, 1127),  # ceil(1126.125)
        (10**9, 1_125_000_000),
        (10**30 + 1, 1_125_000_000_000_000_000_000_000_000_002),
    ],
)
def test_bump_is_a_ceiled_12_5_percent_and_at_least_one_wei(fee: int, bumped: int) -> None:
    assert bump(fee) == bumped
    assert bump(fee) * 1000 >= fee * 1125 and bump(fee) > fee


def test_replacement_raises_both_fields_by_the_bump() -> None:
    old = FeeQuote(max_fee_wei=30 * GWEI, priority_fee_wei=1 * GWEI)
    quiet_market = history(5 * GWEI, [GWEI])  # market max 11 gwei: below the bump
    verdict = quote_replacement(old, quiet_market, POLICY, urgent=False)
    assert verdict == SendNow(FeeQuote(33_750_000_000, 1_125_000_000), 5 * GWEI, 100 * GWEI)


def test_replacement_follows_the_market_when_it_moved_more() -> None:
    old = FeeQuote(max_fee_wei=3 * GWEI, priority_fee_wei=1 * GWEI)
    busy = history(40 * GWEI, [4 * GWEI])
    verdict = quote_replacement(old, busy, POLICY, urgent=False)
    assert isinstance(verdict, SendNow)
    assert verdict.quote == FeeQuote(84 * GWEI, 4 * GWEI)


def test_replacement_is_capped_but_never_below_the_bump() -> None:
    old = FeeQuote(max_fee_wei=80 * GWEI, priority_fee_wei=2 * GWEI)
    verdict = quote_replacement(old, history(60 * GWEI, [2 * GWEI]), POLICY, urgent=False)
    assert isinstance(verdict, SendNow)
    assert verdict.quote == FeeQuote(100 * GWEI, 2_250_000_000)  # market 122 clipped to cap
    near_cap = FeeQuote(max_fee_wei=95 * GWEI, priority_fee_wei=2 * GWEI)
    waiting = quote_replacement(near_cap, history(60 * GWEI, [2 * GWEI]), POLICY, urgent=False)
    assert isinstance(waiting, WaitForFees)
    urgent = quote_replacement(near_cap, history(60 * GWEI, [2 * GWEI]), POLICY, urgent=True)
    assert isinstance(urgent, SendNow) and urgent.quote.max_fee_wei == 122 * GWEI


def test_replacement_priority_fee_never_exceeds_max_fee() -> None:
    old = FeeQuote(max_fee_wei=10, priority_fee_wei=10)
    verdict = quote_replacement(old, history(1, [0]), FeePolicy(priority_floor_wei=0), False)
    assert isinstance(verdict, SendNow)
    assert verdict.quote.priority_fee_wei <= verdict.quote.max_fee_wei
    assert verdict.quote == FeeQuote(12, 12)


def test_cancel_is_possible_above_the_cap() -> None:
    old = FeeQuote(max_fee_wei=90 * GWEI, priority_fee_wei=2 * GWEI)
    spike = history(250 * GWEI, [3 * GWEI])  # above the normal cap, market 503 gwei
    assert isinstance(quote_replacement(old, spike, POLICY, urgent=False), WaitForFees)
    cancel = quote_cancel(old, spike, POLICY)
    assert cancel == SendNow(FeeQuote(300 * GWEI, 3 * GWEI), 250 * GWEI, 300 * GWEI)


def test_cancel_of_a_cheap_tx_above_the_emergency_cap_uses_the_bump() -> None:
    old = FeeQuote(max_fee_wei=10 * GWEI, priority_fee_wei=GWEI)
    verdict = quote_cancel(old, history(1000 * GWEI, [2 * GWEI]), POLICY)
    assert isinstance(verdict, SendNow)
    assert verdict.quote == FeeQuote(300 * GWEI, 2 * GWEI)
    assert verdict.quote.max_fee_wei >= bump(old.max_fee_wei)


def test_cancel_waits_only_when_the_bump_itself_exceeds_the_emergency_cap() -> None:
    old = FeeQuote(max_fee_wei=280 * GWEI, priority_fee_wei=GWEI)
    verdict = quote_cancel(old, history(10 * GWEI, [GWEI]), POLICY)
    assert isinstance(verdict, WaitForFees) and verdict.cap_wei == 300 * GWEI


def test_the_usual_fee_moves_half_way_to_a_new_level_in_one_half_life() -> None:
    usual = UsualFee(10e9, at=1_000)
    assert usual.observe(30 * 10**9, 1_000 + 3_600, half_life_seconds=3_600).wei == 20e9
    two = usual.observe(30 * 10**9, 1_000 + 7_200, half_life_seconds=3_600)
    assert two.wei == pytest.approx(25e9) and two.at == 8_200


def test_a_one_block_spike_barely_moves_the_usual_fee() -> None:
    usual = UsualFee(10e9, at=0).observe(400 * 10**9, 12, half_life_seconds=86_400)
    assert 10e9 < usual.wei < 10.04e9  # 12 s of a day's half-life: 0.01% of the jump
    assert UsualFee(10e9, at=50).observe(99, 40, 60).wei == 10e9  # time never runs back
