"""From decisions to trades and batches (pure, integer arithmetic for every amount).

* :func:`size_trade`: what a vault must sell to get back to target, capped by its balances
  and by what is left of its notional window (mirrors ``OptionsVault._useNotional``);
* :func:`split_by_fees`: under a fee spike only urgent trades go now, the rest wait;
* :func:`pack_batches`: the legs of one block in as few ``RebalanceBatcher`` transactions as the
  gas limit allows (usually one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keeper.core.abi import RebalanceLeg
from keeper.core.types import Action, Decision, VaultState

BPS = 10_000


@dataclass(frozen=True)
class Decimals:
    underlying: int = 18
    quote: int = 6


@dataclass(frozen=True)
class TradeSpec:
    """One vault's swap before routing: sell ``amount_in`` of underlying (or of quote)."""

    vault: str
    sell_underlying: bool
    amount_in: int
    urgent: bool
    note: str = ""  # why the size differs from the decision's, if it does


@dataclass(frozen=True)
class NoTrade:
    vault: str
    reason: str


def underlying_to_quote(amount: int, answer: int, oracle_decimals: int, d: Decimals) -> int:
    """Quote value of ``amount`` underlying at the oracle, rounded down (as the vault does)."""
    return int(amount * answer * 10**d.quote // 10 ** (d.underlying + oracle_decimals))


def quote_to_underlying(amount: int, answer: int, oracle_decimals: int, d: Decimals) -> int:
    return int(amount * 10 ** (d.underlying + oracle_decimals) // (answer * 10**d.quote))


def notional_left(state: VaultState, now: int) -> int:
    """Quote notional the vault will still admit in its current window at ``now``."""
    cap = state.params.notional_cap_per_window
    if now >= state.window_start + state.params.window_seconds:
        return cap
    return max(cap - state.window_notional_used, 0)


def size_trade(
    decision: Decision, state: VaultState, now: int, fee_bps: int, d: Decimals = Decimals()
) -> TradeSpec | NoTrade:
    """The swap that moves the vault's hedge by ``decision.trade_wei`` underlying.

    Buying underlying sells quote grossed up by ``fee_bps`` so the received amount, after the
    pool fee, is about the target. Capped by the vault's balance and its notional window.
    """
    if decision.action != Action.REBALANCE or decision.trade_wei == 0:
        return NoTrade(decision.vault, "no rebalance decided")
    answer, od = state.oracle.answer, state.oracle.decimals
    left = notional_left(state, now)
    notes = []
    if decision.trade_wei < 0:
        amount = min(-decision.trade_wei, state.underlying_balance)
        if amount < -decision.trade_wei:
            notes.append(f"capped by underlying balance {state.underlying_balance}")
        if underlying_to_quote(amount, answer, od, d) > left:
            amount = quote_to_underlying(left, answer, od, d)
            notes.append(f"capped by notional window ({left} quote left)")
        sell_underlying = True
    else:
        wanted = underlying_to_quote(decision.trade_wei, answer, od, d) * BPS // (BPS - fee_bps)
        amount = min(wanted, state.quote_balance, left)
        if amount < wanted:
            notes.append(f"capped by quote balance or notional window ({amount} of {wanted})")
        sell_underlying = False
    if amount <= 0:
        return NoTrade(decision.vault, "nothing to sell: " + "; ".join(notes or ["zero amount"]))
    return TradeSpec(decision.vault, sell_underlying, amount, decision.urgent, "; ".join(notes))


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


@dataclass(frozen=True)
class Batch:
    legs: tuple[RebalanceLeg, ...]
    gas_limit: int


def pack_batches(
    legs: Sequence[RebalanceLeg], gas_per_leg: Sequence[int], base_gas: int, gas_limit: int
) -> list[Batch]:
    """Greedy packing in the given order: a new batch only when the next leg would not fit.

    ``gas_per_leg[i]`` is leg i's measured or estimated gas; ``base_gas`` the batch overhead.
    A single leg larger than the limit still gets a batch of its own (the node will say no).
    """
    batches: list[Batch] = []
    current: list[RebalanceLeg] = []
    used = base_gas
    for leg, gas in zip(legs, gas_per_leg, strict=True):
        if current and used + gas > gas_limit:
            batches.append(Batch(tuple(current), used))
            current, used = [], base_gas
        current.append(leg)
        used += gas
    if current:
        batches.append(Batch(tuple(current), used))
    return batches
