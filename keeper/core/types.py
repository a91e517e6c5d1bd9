"""Typed values passed between the keeper's stages.

Token amounts are ``int`` base units of the token (its decimals come from ``getState``,
nothing assumes 18 or 6); oracle answers are ``int`` in the feed's decimals; ``*_wad`` are
1e18 fixed point. Floats appear only in derived risk numbers (delta, gamma, band), which are
estimates, never amounts that are sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace

WAD = 10**18


@dataclass(frozen=True)
class BlockRef:
    """A block as the keeper saw it."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int
    base_fee_wei: int = 0
    gas_limit: int = 0  # the block's gas limit (0: not known)


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
    """The hedging policy (``IOptionsVault.VaultParams``)."""

    implied_vol_wad: int
    risk_free_rate_wad: int
    target_delta_wad: int
    band_floor_wad: int
    hard_limit_wad: int
    risk_aversion_wad: int
    policy: PolicyKind
    policy_param: int


@dataclass(frozen=True)
class Guards:
    """What bounds any keeper key (``IOptionsVault.Guards``); quote amounts in base units."""

    max_slippage_bps: int
    notional_cap: int  # notional bucket capacity
    loss_budget: int  # loss bucket capacity
    window_seconds: int  # time for a bucket to refill from empty
    max_trade_notional: int  # per-trade cap (oracle value of what is given)
    corrective_reserve_bps: int  # share of notional_cap only urgent trades may use
    max_overshoot_wad: int  # how far past the target a trade may leave the deviation
    oracle_heartbeat: int  # seconds


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
    """Everything the keeper reads about one vault in one block (``getState`` v2)."""

    address: str
    quote_balance: int
    underlying_balance: int
    quote_decimals: int
    underlying_decimals: int
    params: VaultParams
    guards: Guards
    book: tuple[OptionLeg, ...]
    oracle: OracleRound  # carries oracleDecimals
    paused: bool
    state_nonce: int  # compare-and-swap: every trade carries the nonce it was computed from
    request_nonce: int
    params_version: int
    last_rebalance_at: int
    notional_available: int  # notional bucket level now (refill applied), quote units
    loss_available: int  # loss bucket level now (refill applied), quote units

    @property
    def underlying_unit(self) -> int:
        """Base units of one whole underlying token."""
        return int(10**self.underlying_decimals)


@dataclass(frozen=True)
class HotState:
    """``getHotState``: the fields of :class:`VaultState` that move between governance
    changes, and ``config_hash``, the vault's hash of the rest (params, guards, book; the
    decimals are immutable). A state read when the hash was the same takes these fields
    (:meth:`onto`) and is then what ``getState`` would return."""

    quote_balance: int
    underlying_balance: int
    oracle_round_id: int
    oracle_answer: int
    oracle_updated_at: int
    oracle_ok: bool
    paused: bool
    state_nonce: int
    request_nonce: int
    params_version: int
    last_rebalance_at: int
    notional_available: int
    loss_available: int
    config_hash: bytes

    def onto(self, state: VaultState) -> VaultState:
        """``state`` (read under this ``config_hash``) with this block's moving fields."""
        oracle = OracleRound(
            self.oracle_round_id,
            self.oracle_answer,
            self.oracle_updated_at,
            state.oracle.decimals,
            self.oracle_ok,
        )
        return replace(state, oracle=oracle, **{name: getattr(self, name) for name in _MOVING})


_MOVING = tuple(f.name for f in fields(HotState) if f.name in VaultState.__dataclass_fields__)
"""The fields a :class:`HotState` carries over as they are (its oracle fields make a round)."""


@dataclass(frozen=True)
class Trade:
    """One vault's trade (``IOptionsVault.Trade``): give exactly ``amount_in`` of the token it
    sells, receive at least ``max(min_out, oracle bound)``, only while the vault's stateNonce
    is still ``expected_state_nonce`` (compare-and-swap)."""

    sell_underlying: bool
    amount_in: int
    min_out: int
    expected_state_nonce: int
    deadline: int


@dataclass(frozen=True)
class SettleLeg:
    """One vault's part of a netted settlement (``ISettlement.Leg``): its trade and what the
    settlement pays it, in the token it buys."""

    vault: str
    trade: Trade
    payout: int


@dataclass(frozen=True)
class NetSwap:
    """The net of a settlement that goes to the market (``ISettlement.NetSwap``);
    ``amount_in == 0``: the legs match exactly, nothing is swapped."""

    router: str
    sell_underlying: bool
    amount_in: int
    min_out: int
    swap_data: bytes


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
    inner: float = 0.0  # h: the band's inner target |deviation| (0: trade back to target)
    trade_to_deviation: float = 0.0  # the deviation the trade leaves (sign(dev) * h on a band
    # or urgent trigger, 0 on a governance trigger); trade_wei = -(deviation - this) in wei
    vol: float = 0.0  # the volatility the greeks and the band used (implied or realized)
