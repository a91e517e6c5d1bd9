"""The direct route: quote on Uniswap V3 QuoterV2, swap through the V3 SwapRouter.

``QuoterV2.quoteExactInputSingle((tokenIn, tokenOut, amountIn, fee, sqrtPriceLimitX96))``
is not a view: it runs the pool's swap, reverts inside its own callback with the result and
decodes that revert, so an ``eth_call`` of it returns ``(amountOut, sqrtPriceX96After,
initializedTicksCrossed, gasEstimate)`` normally; it reverts only when the pool is missing
or cannot fill the amount. The swap itself is ``SwapRouter.exactInputSingle((tokenIn,
tokenOut, fee, recipient, deadline, amountIn, amountOutMinimum, sqrtPriceLimitX96))``, paid
by ``msg.sender`` (the vault, which approves the router for exactly ``amountIn``) and paid
out to ``recipient`` (the vault). ``SwapRouter.multicall(bytes[])`` delegatecalls itself, so
several ``exactInputSingle`` in one multicall all pay from the same ``msg.sender``.

Selectors and layouts come from the shipped QuoterV2 / SwapRouter artifacts
(:mod:`keeper.contracts`). A book's quotes (every direction, size and tier) go in one
Multicall3 ``aggregate3`` eth_call (:meth:`UniswapDirect.quote_depth`); QuoterV2's
revert-and-decode trick works inside it, a sub-call that cannot fill is a failed result.

Sources: v3-periphery contracts/lens/QuoterV2.sol, contracts/SwapRouter.sol,
contracts/base/Multicall.sol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from eth_utils.address import to_checksum_address
from web3.exceptions import ContractLogicError, Web3Exception

from keeper.chain.eth import BlockId, Chain
from keeper.core import abi
from keeper.core.book import Depth, DexCurve
from keeper.core.swap import BPS, SwapQuote
from keeper.errors import DecodeError, KeeperError, QuoteError, QuoteRefused, SimulationReverted

log = logging.getLogger("keeper.uniswap")

_QUOTE_SINGLE = abi.function("QuoterV2", "quoteExactInputSingle")
_EXACT_INPUT_SINGLE = abi.function("SwapRouter", "exactInputSingle")
_MULTICALL = abi.function("SwapRouter", "multicall")
# Gas a SwapRouter transaction adds to the pool swaps QuoterV2 measures (base cost,
# calldata, router dispatch, first token pull). Sum of the quoter's estimates plus this
# came within 5% of eth_estimateGas on the world: 1 WETH single tier 142k vs 145k, 30 WETH
# split over two tiers 239k vs 235k.
ROUTER_OVERHEAD_GAS = 45_000
QUOTE_GAS = 200_000  # upper bound of one quoteExactInputSingle sub-call (chunking the multicall)


@dataclass(frozen=True)
class TierQuote:
    """QuoterV2's answer for ``amount_in`` on the pool of one fee tier."""

    fee: int
    amount_in: int
    amount_out: int
    sqrt_price_after: int
    ticks_crossed: int
    gas_estimate: int


# --- calldata (pure, layouts from the shipped ABIs) ---------------------------------------


def encode_quote_exact_input_single(
    token_in: str, token_out: str, amount_in: int, fee: int
) -> bytes:
    """QuoterV2 ``quoteExactInputSingle`` calldata, no price limit."""
    params = {
        "token_in": token_in,
        "token_out": token_out,
        "amount_in": amount_in,
        "fee": fee,
        "sqrt_price_limit_x96": 0,
    }
    return _QUOTE_SINGLE.encode(params)


def decode_quote_exact_input_single(fee: int, amount_in: int, data: bytes) -> TierQuote:
    try:
        out = _QUOTE_SINGLE.decode(data)
    except DecodeError as exc:
        raise QuoteError(f"QuoterV2 returned undecodable data for fee {fee}: {exc}") from exc
    amount_out, sqrt_after, ticks, gas = (int(x) for x in out)
    return TierQuote(fee, amount_in, amount_out, sqrt_after, ticks, gas)


def encode_exact_input_single(
    token_in: str,
    token_out: str,
    fee: int,
    recipient: str,
    deadline: int,
    amount_in: int,
    amount_out_minimum: int,
) -> bytes:
    """SwapRouter ``exactInputSingle`` calldata, no price limit."""
    params = {
        "token_in": token_in,
        "token_out": token_out,
        "fee": fee,
        "recipient": recipient,
        "deadline": deadline,
        "amount_in": amount_in,
        "amount_out_minimum": amount_out_minimum,
        "sqrt_price_limit_x96": 0,
    }
    return _EXACT_INPUT_SINGLE.encode(params)


def encode_multicall(calls: Sequence[bytes]) -> bytes:
    """SwapRouter ``multicall(bytes[])`` calldata."""
    return _MULTICALL.encode(list(calls))


def min_out_after_slippage(amount_out: int, slippage_bps: int) -> int:
    """amount * (10000 - slippageBps) / 10000, rounded down (the 0x minBuyAmount rule)."""
    return amount_out * (BPS - slippage_bps) // BPS


@dataclass(frozen=True)
class DirectDepth:
    """The book's depth from one multicall, and the best tier at every quoted size."""

    depth: Depth
    best: dict[tuple[bool, int], TierQuote]  # (sell_underlying, amount_in) -> best tier


def depth_from_results(
    keys: Sequence[tuple[bool, int, int]], results: Sequence[abi.CallResult]
) -> DirectDepth:
    """The best tier per (direction, size) from the multicall's results (a failed sub-call is
    a pool that cannot fill that size)."""
    best: dict[tuple[bool, int], TierQuote] = {}
    for (side, amount, fee), result in zip(keys, results, strict=True):
        if not result.success:
            continue
        q = decode_quote_exact_input_single(fee, amount, result.return_data)
        if (side, amount) not in best or q.amount_out > best[(side, amount)].amount_out:
            best[(side, amount)] = q

    def curve(side: bool) -> DexCurve:
        pts = sorted((a, q.amount_out) for (s, a), q in best.items() if s == side)
        return DexCurve(side, tuple(pts))

    return DirectDepth(Depth(sell=curve(True), buy=curve(False)), best)


# --- quoting over a node --------------------------------------------------------------------


class UniswapDirect:
    """Quotes every fee tier with QuoterV2 and builds the best tier's SwapRouter calldata.

    :meth:`quote_depth` puts every (direction, size, tier) of a book in one Multicall3
    ``aggregate3`` eth_call (chunked under ``gas_cap``): the quote count per block does not
    grow with the number of vaults.
    """

    def __init__(
        self,
        w3: Chain,
        quoter: str,
        swap_router: str,
        fee_tiers: Sequence[int] = (500, 3000),
        *,
        multicall: str | None = None,
        gas_cap: int = 25_000_000,
    ) -> None:
        self._w3 = w3
        self.quoter = to_checksum_address(quoter)
        self.swap_router = to_checksum_address(swap_router)
        self.fee_tiers = tuple(fee_tiers)
        self._multicall = None if multicall is None else to_checksum_address(multicall)
        self._gas_cap = gas_cap
        self.calls = 0  # eth_calls made (the benchmark reads it)

    async def quote_depth(
        self,
        underlying: str,
        quote_token: str,
        sizes: dict[bool, list[int]],
        block: BlockId = "latest",
    ) -> DirectDepth:
        """Every size of ``sizes`` (by direction, True = selling the underlying) on every
        tier, in one multicall eth_call per ``gas_cap`` of sub-calls."""
        if self._multicall is None:
            raise QuoteError("no Multicall3 address: cannot quote a book in one call")
        keys = [
            (side, a, fee)
            for side, amounts in sizes.items()
            for a in amounts
            for fee in self.fee_tiers
        ]
        quotes = [
            (underlying if side else quote_token, quote_token if side else underlying, a, fee)
            for side, a, fee in keys
        ]
        return depth_from_results(keys, await self._quoted(quotes, block))

    async def quote_each(
        self,
        token_in: str,
        token_out: str,
        wanted: Sequence[tuple[int, int]],
        block: BlockId = "latest",
    ) -> dict[tuple[int, int], TierQuote]:
        """QuoterV2 for every (fee tier, amount in) of ``wanted``: one multicall eth_call per
        ``gas_cap`` of sub-calls when a Multicall3 is known, else one call per pair, run
        together. A pool that cannot fill its amount (the quoter reverts) is left out; a
        transport failure raises ``QuoteError``."""
        if self._multicall is None:
            return await self._quote_each_alone(token_in, token_out, wanted, block)
        results = await self._quoted([(token_in, token_out, a, fee) for fee, a in wanted], block)
        return {
            (fee, a): decode_quote_exact_input_single(fee, a, r.return_data)
            for (fee, a), r in zip(wanted, results, strict=True)
            if r.success
        }

    async def _quote_each_alone(
        self,
        token_in: str,
        token_out: str,
        wanted: Sequence[tuple[int, int]],
        block: BlockId,
    ) -> dict[tuple[int, int], TierQuote]:
        results = await asyncio.gather(
            *(self.quote_tier(token_in, token_out, a, fee, block) for fee, a in wanted),
            return_exceptions=True,
        )
        quotes: dict[tuple[int, int], TierQuote] = {}
        for key, result in zip(wanted, results, strict=True):
            if isinstance(result, TierQuote):
                quotes[key] = result
            elif not isinstance(result, QuoteRefused):
                raise result
        return quotes

    async def _quoted(
        self, quotes: Sequence[tuple[str, str, int, int]], block: BlockId
    ) -> list[abi.CallResult]:
        """QuoterV2 for every (token in, token out, amount in, fee) in Multicall3 eth_calls of
        at most ``gas_cap`` of sub-calls; a result per quote, in order."""
        calls = [
            abi.Call3(self.quoter, encode_quote_exact_input_single(token_in, token_out, a, fee))
            for token_in, token_out, a, fee in quotes
        ]
        results: list[abi.CallResult] = []
        for part in abi.plan_chunks([QUOTE_GAS] * len(calls), len(calls) or 1, self._gas_cap):
            results += await self._aggregate([calls[i] for i in part], block)
        return results

    async def _aggregate(self, calls: Sequence[abi.Call3], block: BlockId) -> list[abi.CallResult]:
        data = abi.encode_aggregate3(calls)
        self.calls += 1
        try:
            raw = await self._w3.eth.call({"to": self._multicall, "data": data}, block)  # type: ignore[typeddict-item]
        except (TimeoutError, OSError, aiohttp.ClientError, Web3Exception, KeeperError) as exc:
            raise QuoteError(f"direct quote multicall failed: {exc}") from exc
        try:
            return abi.decode_aggregate3(bytes(raw))
        except DecodeError as exc:
            raise QuoteError(str(exc)) from exc

    def swap(
        self,
        tier: TierQuote,
        sell_token: str,
        buy_token: str,
        recipient: str,
        deadline: int,
        min_out: int,
    ) -> SwapQuote:
        """The executable direct swap of a quoted tier (``amountOutMinimum`` = ``min_out``)."""
        call_data = encode_exact_input_single(
            sell_token, buy_token, tier.fee, recipient, deadline, tier.amount_in, min_out
        )
        return SwapQuote(
            source="uniswap-direct",
            router=self.swap_router,
            call_data=call_data,
            sell_token=to_checksum_address(sell_token),
            buy_token=to_checksum_address(buy_token),
            sell_amount=tier.amount_in,
            buy_amount=tier.amount_out,
            min_buy_amount=min_out,
            gas=tier.gas_estimate + ROUTER_OVERHEAD_GAS,
        )

    async def quote_tier(
        self,
        token_in: str,
        token_out: str,
        amount_in: int,
        fee: int,
        block: BlockId = "latest",
    ) -> TierQuote:
        """QuoterV2 for one tier; ``QuoteRefused`` if the pool reverts (missing, too shallow)."""
        data = encode_quote_exact_input_single(token_in, token_out, amount_in, fee)
        try:
            raw = await self._w3.eth.call({"to": self.quoter, "data": data}, block)  # type: ignore[typeddict-item]
        except (ContractLogicError, SimulationReverted) as exc:
            raise QuoteRefused(f"fee {fee} pool cannot quote {amount_in}: {exc}") from exc
        except (TimeoutError, OSError, aiohttp.ClientError, Web3Exception, KeeperError) as exc:
            raise QuoteError(f"QuoterV2 call for fee {fee} failed: {exc}") from exc
        return decode_quote_exact_input_single(fee, amount_in, bytes(raw))

    async def quote_tiers(
        self, token_in: str, token_out: str, amount_in: int, block: BlockId = "latest"
    ) -> list[TierQuote]:
        """Every tier that can fill ``amount_in``, quoted concurrently; best first.

        ``QuoteRefused`` if none can; a transport failure of any tier raises ``QuoteError``.
        """
        results = await asyncio.gather(
            *(
                self.quote_tier(token_in, token_out, amount_in, fee, block)
                for fee in self.fee_tiers
            ),
            return_exceptions=True,
        )
        quotes: list[TierQuote] = []
        refusals: list[str] = []
        for result in results:
            if isinstance(result, TierQuote):
                quotes.append(result)
            elif isinstance(result, QuoteRefused):
                refusals.append(str(result))
            else:
                raise result
        if not quotes:
            raise QuoteRefused("no Uniswap tier can fill the order: " + "; ".join(refusals))
        return sorted(quotes, key=lambda q: q.amount_out, reverse=True)
