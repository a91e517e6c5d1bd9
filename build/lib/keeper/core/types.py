"""Typed values passed between the keeper's stages.

Token amounts are ``int`` base units (WETH: 1e18, USDC: 1e6); oracle answers are ``int``
in the feed's decimals; ``*_wad`` are 1e18 fixed point. Floats appear only in derived
risk numbers (delta, gamma, band), which are estimates, never amounts that are sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

WAD = 10**18


@dataclass(frozen=True)
class BlockRef:
    """A block as the keeper saw it."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int
    base_fee_wei: int = 0


@dataclass(frozen=True)
class OptionLeg:
    """One European option in a vault's book; ``size`` < 0 means the vault wrote it."""

    strike: int  # oracle decimals
    expiry: int  # unix seconds
    size: int  # underlying base units, signed
    is_call: bool


class PolicyKind(enum.IntEnum):
    """How a vault decides when to rebalance (``VaultParams.policy`` on chain)."""

    GAS_ADJUSTED_BAND = 0
    FIXED_THRESHOLD = 1
    TIME_BASED = 2


@dataclass(frozen=True)
class VaultParams:
    implied_vol_wad: int
    risk_free_rate_wad: int
    target_delta_wad: int
    band_floor_wad: int
    hard_limit_wad: int
    risk_aversion_wad: int
    policy: PolicyKind
    policy_param: int
    max_slippage_bps: int
    notional_cap_per_window: int
    window_seconds: int
    oracle_heartbeat: int


@dataclass(frozen=True)
class OracleRound:
    round_id: int
    answer: int
    updated_at: int
    decimals: int
    ok: bool = True  # False when the feed call itself reverted

    @property
    def price(self) -> float:
        """The answer as a float quote price, for the risk math only."""
        return float(self.answer) / float(10**self.decimals)


@dataclass(frozen=True)
class VaultState:
    """Everything the keeper reads about one vault in one block."""

    address: str
    quote_balance: int
    underlying_balance: int
    params: VaultParams
    book: tuple[OptionLeg, ...]
    oracle: OracleRound
    paused: bool
    request_nonce: int
    params_version: int
    last_rebalance_at: int
    window_notional_used: int
    window_start: int


class Action(enum.StrEnum):
    HOLD = "hold"
    REBALANCE = "rebalance"
    SKIP = "skip"  # could not decide safely (stale oracle, unreadable vault, paused)


@dataclass(frozen=True)
class Decision:
    """What the keeper decided for one vault in one block, and why."""

    vault: str
    block_number: int
    block_hash: str
    action: Action
    reason: str
    delta: float = 0.0  # net delta (options + hedge), underlying units
    gamma: float = 0.0  # portfolio gamma, underlying units per quote unit
    band: float = 0.0  # band half-width, underlying units
    deviation: float = 0.0  # delta - target, underlying units
    urgent: bool = False
    trade_wei: int = 0  # signed underlying amount to buy (+) or sell (-), base units
    spot_answer: int = 0  # oracle answer the decision used
    trigger: str = ""  # "band" | "urgent" | "request" | "params" | "" (none fired); a HOLD
    # with a trigger: it fired but the vault is already at target (nothing to trade)
    spot_move: float = 0.0  # spot move (quote) from a fresh hedge to the band edge
