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

Sources: v3-periphery contracts/lens/QuoterV2.sol, contracts/SwapRouter.sol,
contracts/base/Multicall.sol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, Web3Exception
from web3.types import BlockIdentifier

from keeper.core.abi import selector
from keeper.core.swap import BPS, SwapQuote
from keeper.errors import QuoteError, QuoteRefused

log = logging.getLogger("keeper.uniswap")

QUOTE_EXACT_INPUT_SINGLE = selector(
    "quoteExactInputSingle((address,address,uint256,uint24,uint160))"
)
EXACT_INPUT_SINGLE = selector(
    "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
)
MULTICALL = selector("multicall(bytes[])")
# Gas a SwapRouter transaction adds to the pool swaps QuoterV2 measures (base cost,
# calldata, router dispatch, first token pull). Sum of the quoter's estimates plus this
# came within 5% of eth_estimateGas on the world: 1 WETH single tier 142k vs 145k, 30 WETH
# split over two tiers 239k vs 235k.
ROUTER_OVERHEAD_GAS = 45_000


@dataclass(frozen=True)
class TierQuote:
    """QuoterV2's answer for ``amount_in`` on the pool of one fee tier."""

    fee: int
    amount_in: int
    amount_out: int
    sqrt_price_after: int
    ticks_crossed: int
    gas_estimate: int


# --- calldata (pure) ---------------------------------------------------------------------


def encode_quote_exact_input_single(
    token_in: str, token_out: str, amount_in: int, fee: int
) -> bytes:
    """QuoterV2 ``quoteExactInputSingle`` calldata, no price limit."""
    params = (to_checksum_address(token_in), to_checksum_address(token_out), amount_in, fee, 0)
    return QUOTE_EXACT_INPUT_SINGLE + encode(["(address,address,uint256,uint24,uint160)"], [params])


def decode_quote_exact_input_single(fee: int, amount_in: int, data: bytes) -> TierQuote:
    try:
        out, sqrt_after, ticks, gas = decode(["uint256", "uint160", "uint32", "uint256"], data)
    except (DecodingError, OverflowError, ValueError) as exc:
        raise QuoteError(f"QuoterV2 returned undecodable data for fee {fee}: {exc}") from exc
    return TierQuote(fee, amount_in, int(out), int(sqrt_after), int(ticks), int(gas))


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
    params = (
        to_checksum_address(token_in),
        to_checksum_address(token_out),
        fee,
        to_checksum_address(recipient),
        deadline,
        amount_in,
        amount_out_minimum,
        0,
    )
    return EXACT_INPUT_SINGLE + encode(
        ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"], [params]
    )


def encode_multicall(calls: Sequence[bytes]) -> bytes:
    """SwapRouter ``multicall(bytes[])`` calldata."""
    return MULTICALL + encode(["bytes[]"], [list(calls)])


def min_out_after_slippage(amount_out: int, slippage_bps: int) -> int:
    """amount * (10000 - slippageBps) / 10000, rounded down (the 0x minBuyAmount rule)."""
    return amount_out * (BPS - slippage_bps) // BPS


# --- quoting over a node --------------------------------------------------------------------


class UniswapDirect:
    """Quotes every fee tier with QuoterV2 and builds the best tier's SwapRouter calldata."""

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        quoter: str,
        swap_router: str,
        fee_tiers: Sequence[int] = (500, 3000),
    ) -> None:
        self._w3 = w3
        self.quoter = to_checksum_address(quoter)
        self.swap_router = to_checksum_address(swap_router)
        self.fee_tiers = tuple(fee_tiers)

    async def quote_tier(
        self,
        token_in: str,
        token_out: str,
        amount_in: int,
        fee: int,
        block: BlockIdentifier = "latest",
    ) -> TierQuote:
        """QuoterV2 for one tier; ``QuoteRefused`` if the pool reverts (missing, too shallow)."""
        data = encode_quote_exact_input_single(token_in, token_out, amount_in, fee)
        try:
            raw = await self._w3.eth.call({"to": self.quoter, "data": data}, block)  # type: ignore[typeddict-item]
        except ContractLogicError as exc:
            raise QuoteRefused(f"fee {fee} pool cannot quote {amount_in}: {exc}") from exc
        except (TimeoutError, OSError, aiohttp.ClientError, Web3Exception) as exc:
            raise QuoteError(f"QuoterV2 call for fee {fee} failed: {exc}") from exc
        return decode_quote_exact_input_single(fee, amount_in, bytes(raw))

    async def quote_tiers(
        self, token_in: str, token_out: str, amount_in: int, block: BlockIdentifier = "latest"
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

    async def quote(
        self,
        sell_token: str,
        buy_token: str,
        amount_in: int,
        recipient: str,
        slippage_bps: int,
        deadline: int,
        block: BlockIdentifier = "latest",
    ) -> SwapQuote:
        """The best single tier as an executable ``SwapQuote`` (source ``uniswap-direct``).

        The calldata's ``amountOutMinimum`` is the quote less ``slippage_bps``, so the router
        itself also refuses a worse fill.
        """
        best = (await self.quote_tiers(sell_token, buy_token, amount_in, block))[0]
        min_out = min_out_after_slippage(best.amount_out, slippage_bps)
        call_data = encode_exact_input_single(
            sell_token, buy_token, best.fee, recipient, deadline, amount_in, min_out
        )
        log.debug(
            "direct quote",
            extra={
                "fields": {"fee": best.fee, "amount_in": amount_in, "amount_out": best.amount_out}
            },
        )
        return SwapQuote(
            source="uniswap-direct",
            router=self.swap_router,
            call_data=call_data,
            sell_token=to_checksum_address(sell_token),
            buy_token=to_checksum_address(buy_token),
            sell_amount=amount_in,
            buy_amount=best.amount_out,
            min_buy_amount=min_out,
            gas=best.gas_estimate + ROUTER_OVERHEAD_GAS,
        )
