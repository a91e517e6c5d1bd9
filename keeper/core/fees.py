"""EIP-1559 fee policy (pure): what to bid for a new transaction, a replacement, a cancel.

Sources:
* EIP-1559: a transaction pays ``min(max_fee, base_fee + priority_fee)`` per gas; the base
  fee moves by at most 12.5% per block, so ``max_fee = 2 x next base fee + priority`` stays
  includable through about six consecutive full blocks (the common wallet headroom).
* Replacement rule of geth's txpool (``PriceBump``, 10% by default): a transaction with the
  same nonce replaces a pending one only when BOTH ``maxFeePerGas`` and
  ``maxPriorityFeePerGas`` are raised by the bump. We raise by 12.5% so that nodes with a
  higher bump also accept it, rounded up, and always by at least 1 wei.

Caps (decided here, documented for the runner):
* New work and replacements of normal work use ``max_fee_cap_wei``; urgent work uses
  ``emergency_max_fee_cap_wei``. ``max_fee`` is clipped to the cap. When the next base fee
  plus the minimum tip (``priority_floor_wei``) does not fit under the cap, the verdict is
  ``WaitForFees``: the transaction could not be included at that price anyway.
* A cancel (0-value self-transfer with the nonce of the stuck transaction) only has to
  displace the stuck one from the pool, so it ignores the base-fee test and is bounded by
  the emergency cap alone: it waits only when the mandatory 12.5% bump itself exceeds the
  emergency cap. A cancel below the base fee cannot be mined yet, but neither can the
  stale work it displaced.

All amounts are ``int`` wei.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keeper.errors import ConfigError

GWEI = 10**9
BUMP_NUMERATOR = 1125  # +12.5%
BUMP_DENOMINATOR = 1000


@dataclass(frozen=True)
class FeeHistory:
    """An ``eth_feeHistory`` answer: base fees oldest first, the LAST one is the next block's."""

    base_fees: tuple[int, ...]
    rewards: tuple[tuple[int, ...], ...]  # per block, one value per requested percentile
    percentiles: tuple[float, ...]
    gas_used_ratios: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.base_fees:
            raise ValueError("fee history has no base fee")

    @property
    def next_base_fee(self) -> int:
        return self.base_fees[-1]


@dataclass(frozen=True)
class FeePolicy:
    """The configured limits of the fee policy."""

    reward_percentile: float = 50.0
    priority_floor_wei: int = 1 * GWEI
    priority_cap_wei: int = 5 * GWEI
    max_fee_cap_wei: int = 100 * GWEI
    emergency_max_fee_cap_wei: int = 500 * GWEI

    def __post_init__(self) -> None:
        if self.priority_floor_wei < 0 or self.priority_cap_wei < self.priority_floor_wei:
            raise ConfigError("fee policy: need 0 <= priority floor <= priority cap")
        if self.max_fee_cap_wei <= 0 or self.emergency_max_fee_cap_wei < self.max_fee_cap_wei:
            raise ConfigError("fee policy: need 0 < max fee cap <= emergency max fee cap")
        if not 0 <= self.reward_percentile <= 100:
            raise ConfigError("fee policy: reward percentile must be within 0..100")

    def cap(self, urgent: bool) -> int:
        return self.emergency_max_fee_cap_wei if urgent else self.max_fee_cap_wei


@dataclass(frozen=True)
class FeeQuote:
    max_fee_wei: int
    priority_fee_wei: int


@dataclass(frozen=True)
class SendNow:
    """Send with ``quote``; the numbers it was judged on are kept for the log."""

    quote: FeeQuote
    next_base_fee_wei: int
    cap_wei: int


@dataclass(frozen=True)
class WaitForFees:
    """Do not send now: fees do not fit under ``cap_wei``."""

    next_base_fee_wei: int
    priority_fee_wei: int
    cap_wei: int
    reason: str


FeeVerdict = SendNow | WaitForFees


def _median(values: Sequence[int]) -> int:
    """The upper median (an element of ``values``, so it stays an int)."""
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def priority_fee(history: FeeHistory, policy: FeePolicy) -> int:
    """Median over recent non-empty blocks of the reward at the configured percentile,
    clamped to ``[priority_floor_wei, priority_cap_wei]``. Empty blocks report a reward of 0
    that says nothing about the market, so they are left out."""
    if policy.reward_percentile not in history.percentiles:
        raise ConfigError(
            f"fee policy: reward percentile {policy.reward_percentile} was not requested "
            f"from eth_feeHistory {history.percentiles}"
        )
    column = history.percentiles.index(policy.reward_percentile)
    samples = [
        rewards[column]
        for i, rewards in enumerate(history.rewards)
        if len(rewards) > column
        and (i >= len(history.gas_used_ratios) or history.gas_used_ratios[i] > 0)
    ]
    market = _median(samples) if samples else 0
    return min(max(market, policy.priority_floor_wei), policy.priority_cap_wei)


def market_quote(history: FeeHistory, policy: FeePolicy) -> FeeQuote:
    """The uncapped quote: ``max_fee = 2 x next base fee + priority`` (EIP-1559 headroom)."""
    tip = priority_fee(history, policy)
    return FeeQuote(max_fee_wei=2 * history.next_base_fee + tip, priority_fee_wei=tip)


def quote_new(history: FeeHistory, policy: FeePolicy, urgent: bool) -> FeeVerdict:
    """Fees for a new transaction, judged against the normal or (urgent) emergency cap."""
    market = market_quote(history, policy)
    cap = policy.cap(urgent)
    base = history.next_base_fee
    if base + policy.priority_floor_wei > cap:
        return WaitForFees(base, market.priority_fee_wei, cap, "next base fee above the cap")
    max_fee = min(market.max_fee_wei, cap)
    return SendNow(FeeQuote(max_fee, min(market.priority_fee_wei, max_fee)), base, cap)


def bump(fee_wei: int) -> int:
    """``fee`` raised by 12.5%, rounded up, and by at least 1 wei (integer only)."""
    raised = -(-fee_wei * BUMP_NUMERATOR // BUMP_DENOMINATOR)
    return max(raised, fee_wei + 1)


def _bumped(old: FeeQuote, market: FeeQuote, cap: int, base: int) -> FeeVerdict:
    """Both fields raised by the bump, and at least the market quote where the cap allows;
    ``WaitForFees`` when the bump alone does not fit under the cap."""
    min_max_fee = bump(old.max_fee_wei)
    tip = max(bump(old.priority_fee_wei), market.priority_fee_wei)
    if min_max_fee > cap:
        return WaitForFees(base, tip, cap, "a 12.5% bump of the max fee exceeds the cap")
    max_fee = max(min_max_fee, min(market.max_fee_wei, cap))
    return SendNow(FeeQuote(max_fee, min(tip, max_fee)), base, cap)


def quote_replacement(
    old: FeeQuote, history: FeeHistory, policy: FeePolicy, urgent: bool
) -> FeeVerdict:
    """Fees for a same-nonce replacement of ``old`` that still does the same work."""
    market = market_quote(history, policy)
    cap = policy.cap(urgent)
    base = history.next_base_fee
    if base + policy.priority_floor_wei > cap:
        return WaitForFees(base, market.priority_fee_wei, cap, "next base fee above the cap")
    return _bumped(old, market, cap, base)


def quote_cancel(old: FeeQuote, history: FeeHistory, policy: FeePolicy) -> FeeVerdict:
    """Fees for a 0-value self-transfer that displaces ``old``: emergency cap only, no
    base-fee test (see the module docstring)."""
    market = market_quote(history, policy)
    return _bumped(old, market, policy.emergency_max_fee_cap_wei, history.next_base_fee)


@dataclass(frozen=True)
class UsualFee:
    """The base fee's usual level: an exponentially weighted mean with a half-life in time,
    ``m' = m + (1 - 2^(-dt / T)) (x - m)`` (the level a spike decays back to; the band's
    gas-timing rule compares the current fee with it, ``keeper.core.bands.gas_wait``)."""

    wei: float
    at: int  # the timestamp of the last observation

    def observe(self, base_fee_wei: int, timestamp: int, half_life_seconds: float) -> UsualFee:
        if half_life_seconds <= 0:
            return UsualFee(float(base_fee_wei), timestamp)
        weight = 1.0 - 2.0 ** (-max(timestamp - self.at, 0) / half_life_seconds)
        return UsualFee(self.wei + weight * (base_fee_wei - self.wei), timestamp)
