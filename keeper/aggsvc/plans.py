"""Order routing over the world's Uniswap V3 pools: single tier or a split over two tiers.

The two pools are independent, so the output of a split is the sum of QuoterV2 quotes of
its parts, each on its own pool. The service tries, for every pair of tiers, the shares
``split_steps_bps`` of the order on the first tier (the rest on the second) and keeps the
plan that buys the most. A split executes as ``SwapRouter.multicall`` of one
``exactInputSingle`` per part: multicall delegatecalls the router, so every part pays from
the same ``msg.sender`` (the taker) and pays out to the taker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from keeper.chain.uniswap import (
    ROUTER_OVERHEAD_GAS,
    TierQuote,
    UniswapDirect,
    encode_exact_input_single,
    encode_multicall,
    min_out_after_slippage,
)
from keeper.core.swap import BPS
from keeper.errors import QuoteRefused


@dataclass(frozen=True)
class Plan:
    """One or more fills of one order; ``fills`` are QuoterV2 quotes of the parts."""

    fills: tuple[TierQuote, ...]

    @property
    def amount_in(self) -> int:
        return sum(f.amount_in for f in self.fills)

    @property
    def amount_out(self) -> int:
        return sum(f.amount_out for f in self.fills)

    @property
    def gas(self) -> int:
        """QuoterV2's swap gas of every part plus one router transaction's overhead."""
        return sum(f.gas_estimate for f in self.fills) + ROUTER_OVERHEAD_GAS

    def share_bps(self, fill: TierQuote) -> int:
        return fill.amount_in * BPS // self.amount_in


def split_amounts(amount: int, steps_bps: Sequence[int]) -> list[tuple[int, int]]:
    """(first, second) part of ``amount`` for each share in ``steps_bps``, without repeats."""
    parts = []
    for step in steps_bps:
        first = amount * step // BPS
        if (first, amount - first) not in parts:
            parts.append((first, amount - first))
    return parts


async def best_plan(
    direct: UniswapDirect, sell: str, buy: str, amount: int, steps_bps: Sequence[int]
) -> Plan:
    """The plan that buys the most; on a tie the one with fewer fills (less gas).

    ``QuoteRefused`` when no plan can be filled.
    """
    needed = {
        (fee, part)
        for a, b in combinations(direct.fee_tiers, 2)
        for first, second in split_amounts(amount, steps_bps)
        for fee, part in ((a, first), (b, second))
        if part > 0
    }
    needed |= {(fee, amount) for fee in direct.fee_tiers}
    quotes = await direct.quote_each(sell, buy, sorted(needed))
    plans = [Plan((quotes[(fee, amount)],)) for fee in direct.fee_tiers if (fee, amount) in quotes]
    for a, b in combinations(direct.fee_tiers, 2):
        for first, second in split_amounts(amount, steps_bps):
            if first > 0 and second > 0 and (a, first) in quotes and (b, second) in quotes:
                plans.append(Plan((quotes[(a, first)], quotes[(b, second)])))
    if not plans:
        raise QuoteRefused(f"no pool can fill {amount}")
    return max(plans, key=lambda p: (p.amount_out, -len(p.fills)))


def plan_calldata(
    plan: Plan, sell: str, buy: str, recipient: str, deadline: int, slippage_bps: int
) -> bytes:
    """SwapRouter calldata that executes ``plan`` for ``recipient``.

    Each part carries its own minimum (its quote less ``slippage_bps``); their sum is at most
    the plan's minBuyAmount, so the router refuses any fill the quote does not promise.
    """
    calls = [
        encode_exact_input_single(
            sell,
            buy,
            f.fee,
            recipient,
            deadline,
            f.amount_in,
            min_out_after_slippage(f.amount_out, slippage_bps),
        )
        for f in plan.fills
    ]
    return calls[0] if len(calls) == 1 else encode_multicall(calls)


async def short_changing_plan(
    direct: UniswapDirect,
    sell: str,
    buy: str,
    amount: int,
    kept_share_bps: int,
    taker: str,
    sink: str,
    deadline: int,
) -> tuple[TierQuote, bytes]:
    """The bad_price fault: calldata where only ``kept_share_bps`` of the order pays the taker
    and the rest pays ``sink``, with the quote of the kept part (what the taker really gets,
    since that part executes first).
    """
    kept = amount * kept_share_bps // BPS
    best = (await direct.quote_tiers(sell, buy, kept))[0]
    calls = [encode_exact_input_single(sell, buy, best.fee, taker, deadline, kept, 0)]
    if amount > kept:
        rest = amount - kept
        calls.append(encode_exact_input_single(sell, buy, best.fee, sink, deadline, rest, 0))
    return best, encode_multicall(calls)
