"""From a decision to one vault's trade, within everything the vault enforces (pure, integers).

* :func:`size_trade`: what a vault must give to get back to target, capped so the vault would
  accept it: its balances, ``guards.maxTradeNotional``, the notional bucket now
  (``notionalAvailable``, less the corrective reserve unless the trade is corrective), the
  loss bucket (``lossAvailable`` at the worst price the keeper will sign), and the on-chain
  direction / overshoot rule (docs/interfaces.md, "A trade", items 4-7);
* :func:`split_by_fees`: under a fee spike only urgent trades go now, the rest wait.

The netting of several vaults' trades is :mod:`keeper.core.book`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keeper.core.types import WAD, Action, Decision, VaultState

BPS = 10_000


def underlying_to_quote(amount: int, state: VaultState) -> int:
    """Quote value of ``amount`` underlying at the vault's oracle, rounded down
    (``_underlyingToQuote``: amount * answer * 10**qd / 10**(ud + od))."""
    o = state.oracle
    scale = 10 ** (state.underlying_decimals + o.decimals)
    return int(amount * o.answer * 10**state.quote_decimals // scale)


def quote_to_underlying(amount: int, state: VaultState) -> int:
    """Underlying worth ``amount`` quote at the vault's oracle, rounded down."""
    o = state.oracle
    scale = 10 ** (state.underlying_decimals + o.decimals)
    return int(amount * scale // (o.answer * 10**state.quote_decimals))


def to_wad(amount: int, state: VaultState) -> int:
    """Underlying base units as wad underlying units (how the vault measures deviation)."""
    return amount * WAD // state.underlying_unit


def from_wad(amount_wad: int, state: VaultState) -> int:
    return amount_wad * state.underlying_unit // WAD


def corrective(deviation_wad: int, state: VaultState) -> bool:
    """The vault's own test for a corrective trade: ``|devBefore| >= hardLimitWad``."""
    return abs(deviation_wad) >= state.params.hard_limit_wad


def notional_usable(state: VaultState, is_corrective: bool) -> int:
    """Notional the vault admits now: the bucket level, less the corrective reserve for a
    trade that is not corrective."""
    if is_corrective:
        return state.notional_available
    reserve = state.guards.notional_cap * state.guards.corrective_reserve_bps // BPS
    return max(state.notional_available - reserve, 0)


def max_move(deviation_wad: int, state: VaultState) -> int:
    """Largest underlying move (base units) the direction rule admits: back to target and
    at most ``maxOvershootWad`` past it."""
    return from_wad(abs(deviation_wad) + state.guards.max_overshoot_wad, state)


def direction_ok(deviation_wad: int, moved: int, state: VaultState) -> bool:
    """The vault's direction rule for a trade that moves the hedge by ``moved`` underlying
    base units (+ bought, - sold): it passes if it leaves ``|devAfter| <= maxOvershootWad``,
    or moves toward the target without crossing it (docs/interfaces.md, "A trade", item 7)."""
    after = deviation_wad + to_wad(moved, state)
    if abs(after) <= state.guards.max_overshoot_wad:
        return True
    same_side = after != 0 and (after > 0) == (deviation_wad > 0)
    return same_side and abs(after) < abs(deviation_wad)


@dataclass(frozen=True)
class TradeSpec:
    """One vault's trade before routing and netting.

    ``underlying``: the underlying it sells (``sell_underlying``) or wants to receive;
    ``amount_in``: what it gives on its own DEX trade (the underlying, or the quote grossed up
    by the expected cost); ``loss_bps``: the worst cost the keeper signs for it (its min out).
    """

    vault: str
    state: VaultState
    sell_underlying: bool
    underlying: int
    amount_in: int
    deviation_wad: int
    urgent: bool
    loss_bps: int
    note: str = ""  # why the size differs from the decision's, if it does

    @property
    def corrective(self) -> bool:
        return corrective(self.deviation_wad, self.state)


@dataclass(frozen=True)
class NoTrade:
    vault: str
    reason: str


def size_trade(
    decision: Decision, state: VaultState, cost_bps: int, loss_bps: int
) -> TradeSpec | NoTrade:
    """The trade that moves the vault's hedge by ``decision.trade_wei``, within its guards.

    ``cost_bps``: expected DEX fee and slippage (buying grosses the quote up by it);
    ``loss_bps``: the worst cost the keeper signs (its min out), charged to the loss bucket.
    """
    if decision.action != Action.REBALANCE or decision.trade_wei == 0:
        return NoTrade(decision.vault, "no rebalance decided")
    if not 0 <= cost_bps <= loss_bps < BPS:
        return NoTrade(decision.vault, f"costs out of range: {cost_bps} / {loss_bps} bps")
    dev = round(decision.deviation * WAD)
    sell = decision.trade_wei < 0
    wanted = min(abs(decision.trade_wei), max_move(dev, state))
    notes = [] if wanted == abs(decision.trade_wei) else ["capped by the overshoot allowance"]
    cap, why = _notional_cap(state, dev, loss_bps)
    if sell:
        want_in = wanted
        limits = {
            "underlying balance": state.underlying_balance,
            why: quote_to_underlying(cap, state),
        }
    else:
        want_in = underlying_to_quote(wanted, state) * BPS // (BPS - cost_bps)
        limits = {"quote balance": state.quote_balance, why: cap}
    amount = min(want_in, *limits.values())
    notes += [f"capped by {k}" for k, v in limits.items() if v == amount < want_in]
    if sell:
        underlying = amount
    elif amount == want_in:
        underlying = wanted
    else:
        underlying = quote_to_underlying(amount * (BPS - cost_bps) // BPS, state)
    if amount <= 0 or underlying <= 0:
        return NoTrade(decision.vault, "nothing to trade: " + "; ".join(notes or ["zero amount"]))
    return TradeSpec(
        vault=decision.vault,
        state=state,
        sell_underlying=sell,
        underlying=underlying,
        amount_in=amount,
        deviation_wad=dev,
        urgent=decision.urgent,
        loss_bps=loss_bps,
        note="; ".join(notes),
    )


def _notional_cap(state: VaultState, dev: int, loss_bps: int) -> tuple[int, str]:
    """The largest notional (quote units of what is given) the vault admits, and which guard
    sets it: per-trade cap, notional bucket (with the reserve rule), loss bucket."""
    caps = {
        "maxTradeNotional": state.guards.max_trade_notional,
        "notional bucket": notional_usable(state, corrective(dev, state)),
        "loss bucket": state.loss_available * BPS // loss_bps if loss_bps else 2**255,
    }
    why = min(caps, key=lambda k: caps[k])
    return caps[why], why


@dataclass(frozen=True)
class FeeGate:
    """This block's fee situation, from the fee policy."""

    base_fee_wei: int
    max_fee_cap_wei: int


def split_by_fees(
    trades: Sequence[TradeSpec], gate: FeeGate
) -> tuple[list[TradeSpec], list[TradeSpec]]:
    """(send now, wait): above the cap only urgent trades go; the rest are re-decided next block."""
    if gate.base_fee_wei <= gate.max_fee_cap_wei:
        return list(trades), []
    return [t for t in trades if t.urgent], [t for t in trades if not t.urgent]


def within_block_gas(gas_limits: Sequence[int], block_gas_limit: int, share: float) -> int:
    """How many of the block's transactions (in the order they would be sent, each with
    its gas limit) to send now: as many as fit together in ``share`` of the block's gas
    limit, and always the first one that fits in a block at all. What spills over would be
    mined in later blocks on a state it was not planned for; it is decided afresh next
    block instead. ``block_gas_limit`` 0 (unknown): all of them."""
    if block_gas_limit <= 0:
        return len(gas_limits)
    budget = block_gas_limit * share
    used = 0
    for count, gas in enumerate(gas_limits):
        if used + gas > budget and (count > 0 or gas > block_gas_limit):
            return count
        used += gas
    return len(gas_limits)
