"""Swap quotes, the oracle bound the vault enforces, and the checks a quote must pass (pure).

A rebalancing vault sells WETH for USDC (or the reverse) through an allowlisted router and
reverts unless it receives ``max(minOut, boundMin)``. ``oracle_bound_min_out`` is that
``boundMin``, computed with the same integer operations and rounding as
``OptionsVault._boundMin`` (contracts/OptionsVault.sol). ``check_quote`` refuses any quote
the vault would reject or that is not the trade the keeper asked for. Integer arithmetic only.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from keeper.core.types import VaultState
from keeper.errors import OracleRejected, QuoteRefused

BPS = 10_000
# The vault's own limits (OptionsVault.MAX_AMOUNT / MAX_ANSWER / MAX_DECIMALS).
MAX_AMOUNT = 2**96 - 1
MAX_ANSWER = 2**96 - 1
MAX_DECIMALS = 18

QuoteSource = Literal["0x", "uniswap-direct"]


@dataclass(frozen=True)
class SwapQuote:
    """A priced, executable swap: call ``router`` with ``call_data`` after approving it.

    Amounts are base units of ``sell_token`` / ``buy_token``; ``gas`` is the source's estimate.
    """

    source: QuoteSource
    router: str
    call_data: bytes
    sell_token: str
    buy_token: str
    sell_amount: int
    buy_amount: int
    min_buy_amount: int
    gas: int


@dataclass(frozen=True)
class SwapRequest:
    """One vault's swap for one block, with what the keeper needs to judge any quote for it.

    ``slippage_bps`` is the tolerance asked of the quote sources; ``deadline`` (unix seconds)
    goes into calldata the keeper builds itself. ``allowed_routers`` mirrors the vault's
    on-chain allowlist.
    """

    taker: str  # who holds the tokens and receives the output: the vault or the settlement
    sell_underlying: bool
    amount_in: int
    underlying: str
    quote_token: str
    oracle_answer: int
    oracle_decimals: int
    max_slippage_bps: int
    allowed_routers: frozenset[str]
    deadline: int
    underlying_decimals: int
    quote_decimals: int
    slippage_bps: int = 30

    @property
    def sell_token(self) -> str:
        return self.underlying if self.sell_underlying else self.quote_token

    @property
    def buy_token(self) -> str:
        return self.quote_token if self.sell_underlying else self.underlying

    def bound_min_out(self) -> int:
        """The vault's oracle-bounded minimum output for this request."""
        return oracle_bound_min_out(
            self.sell_underlying,
            self.amount_in,
            self.oracle_answer,
            self.oracle_decimals,
            self.max_slippage_bps,
            self.underlying_decimals,
            self.quote_decimals,
        )


def oracle_bound_min_out(
    sell_underlying: bool,
    amount_in: int,
    oracle_answer: int,
    oracle_decimals: int,
    max_slippage_bps: int,
    underlying_decimals: int,
    quote_decimals: int,
) -> int:
    """``OptionsVault._boundMin``: the oracle value of ``amount_in`` less ``max_slippage_bps``.

    Selling underlying: fair = amount * answer * 10**qd // 10**(ud + od)
    (``_underlyingToQuote``); buying it: fair = amount * 10**(ud + od) // (answer * 10**qd)
    (``_quoteToUnderlying``); then bound = fair * (10000 - bps) // 10000. Each division
    rounds down, as Solidity's does. Inputs the vault reverts on raise instead.
    """
    _check_bound_inputs(
        amount_in,
        oracle_answer,
        max_slippage_bps,
        (oracle_decimals, underlying_decimals, quote_decimals),
    )
    scale = _pow10(underlying_decimals + oracle_decimals)
    if sell_underlying:
        fair = amount_in * oracle_answer * _pow10(quote_decimals) // scale
    else:
        fair = amount_in * scale // (oracle_answer * _pow10(quote_decimals))
    return fair * (BPS - max_slippage_bps) // BPS


def _pow10(exponent: int) -> int:
    return int(10**exponent)


def _check_bound_inputs(
    amount_in: int, oracle_answer: int, max_slippage_bps: int, decimals: tuple[int, ...]
) -> None:
    if amount_in <= 0:
        raise QuoteRefused(f"amount_in must be positive, got {amount_in}")
    if amount_in > MAX_AMOUNT:
        raise QuoteRefused(f"amount_in {amount_in} exceeds the vault's maximum {MAX_AMOUNT}")
    if oracle_answer <= 0:
        raise OracleRejected(f"oracle answer {oracle_answer} is not positive")
    if oracle_answer > MAX_ANSWER:
        raise OracleRejected(f"oracle answer {oracle_answer} exceeds the vault's maximum")
    if not 0 <= max_slippage_bps < BPS:
        raise QuoteRefused(f"max_slippage_bps must be in [0, {BPS}), got {max_slippage_bps}")
    if any(not 0 <= d <= MAX_DECIMALS for d in decimals):
        raise QuoteRefused(f"decimals {decimals} outside [0, {MAX_DECIMALS}]")


def same_address(a: str, b: str) -> bool:
    """Address equality regardless of checksum case."""
    return a.lower() == b.lower()


def check_quote(
    quote: SwapQuote,
    request: SwapRequest,
    bound_min_out: int,
    allowed_routers: Collection[str],
) -> SwapQuote:
    """Return ``quote`` if it is the requested trade and the vault would accept its price.

    Refuses (``QuoteRefused``, naming the reason) when the router is not allowlisted, the
    tokens or the amount differ from the request, there is no calldata, the amounts are
    inconsistent, or ``buy_amount`` or ``min_buy_amount`` is below the oracle bound (a
    minimum below the bound means the quote leaves less than its own slippage headroom above
    the price at which the vault reverts).
    """
    what = f"{quote.source} quote for {request.taker}"
    if not any(same_address(quote.router, r) for r in allowed_routers):
        raise QuoteRefused(f"{what}: router {quote.router} is not allowlisted")
    if not same_address(quote.sell_token, request.sell_token):
        raise QuoteRefused(f"{what}: sells {quote.sell_token}, asked {request.sell_token}")
    if not same_address(quote.buy_token, request.buy_token):
        raise QuoteRefused(f"{what}: buys {quote.buy_token}, asked {request.buy_token}")
    if quote.sell_amount != request.amount_in:
        raise QuoteRefused(f"{what}: sells {quote.sell_amount}, asked {request.amount_in}")
    if not quote.call_data:
        raise QuoteRefused(f"{what}: no calldata")
    if quote.min_buy_amount > quote.buy_amount:
        raise QuoteRefused(
            f"{what}: min_buy_amount {quote.min_buy_amount} above buy_amount {quote.buy_amount}"
        )
    if quote.buy_amount < bound_min_out:
        raise QuoteRefused(
            f"{what}: buy_amount {quote.buy_amount} below the oracle bound {bound_min_out}"
        )
    if quote.min_buy_amount < bound_min_out:
        raise QuoteRefused(
            f"{what}: min_buy_amount {quote.min_buy_amount} below the oracle bound {bound_min_out}"
        )
    return quote


NATIVE_DECIMALS = 18


def gas_in_token(gas: int, gas_price_wei: int, in_underlying: bool, state: VaultState) -> int:
    """The cost of ``gas`` units at ``gas_price_wei`` in base units of the underlying
    (``in_underlying``) or of the quote token at the vault's oracle. Assumes the underlying is
    the chain's wrapped native token (WETH on the world and on mainnet)."""
    wei = gas * gas_price_wei
    underlying = wei * 10**state.underlying_decimals // 10**NATIVE_DECIMALS
    if in_underlying:
        return int(underlying)
    o = state.oracle
    scale = 10 ** (state.underlying_decimals + o.decimals)
    return int(underlying * o.answer * 10**state.quote_decimals // scale)
