"""Routes one block's swaps: the aggregator first, the direct Uniswap route as fallback.

Every request of a block is routed concurrently (``asyncio.gather``). A request first goes
to the aggregator (if one is configured), bounded by its own timeout; when that fails,
stalls or its quote is refused by ``check_quote``, the direct route is tried, also checked.
The result is ``Routed`` (a checked quote and its batcher leg) or ``Unroutable`` (every
attempt and why it failed), never ``None``; which route was used and why a fallback
happened is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from keeper.chain.retry import quote_retry
from keeper.core.abi import RebalanceLeg
from keeper.core.swap import SwapQuote, SwapRequest, check_quote, to_leg
from keeper.errors import KeeperError, QuoteRefused

log = logging.getLogger("keeper.routing")

Outcome = Literal["ok", "error", "timeout", "refused"]


class AggregatorQuotes(Protocol):
    """What the router needs of an aggregator client (``ZeroExClient``)."""

    async def quote(
        self, sell_token: str, buy_token: str, sell_amount: int, taker: str, slippage_bps: int
    ) -> SwapQuote: ...


class DirectQuotes(Protocol):
    """What the router needs of the direct route (``UniswapDirect``)."""

    async def quote(
        self,
        sell_token: str,
        buy_token: str,
        amount_in: int,
        recipient: str,
        slippage_bps: int,
        deadline: int,
    ) -> SwapQuote: ...


@dataclass(frozen=True)
class Attempt:
    """One source tried for one request, and how it went."""

    source: str
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class Routed:
    """A checked quote for ``request`` and the batcher leg that executes it."""

    request: SwapRequest
    quote: SwapQuote
    leg: RebalanceLeg
    bound_min_out: int
    attempts: tuple[Attempt, ...]

    @property
    def fell_back(self) -> bool:
        return len(self.attempts) > 1


@dataclass(frozen=True)
class Unroutable:
    """No source produced an acceptable quote; ``attempts`` says why, source by source."""

    request: SwapRequest
    attempts: tuple[Attempt, ...]

    @property
    def reason(self) -> str:
        return "; ".join(f"{a.source} {a.outcome}: {a.detail}" for a in self.attempts)


RouteResult = Routed | Unroutable


class Router:
    """Aggregator first (optional), then the direct route; each stage has its own timeout."""

    def __init__(
        self,
        direct: DirectQuotes,
        aggregator: AggregatorQuotes | None = None,
        *,
        aggregator_timeout_seconds: float = 3.0,
        direct_timeout_seconds: float = 5.0,
        direct_attempts: int = 2,
    ) -> None:
        self._direct = direct
        self._aggregator = aggregator
        self._aggregator_timeout = aggregator_timeout_seconds
        self._direct_timeout = direct_timeout_seconds
        self._direct_attempts = direct_attempts

    async def quote_all(self, requests: Sequence[SwapRequest]) -> list[RouteResult]:
        """Route every request concurrently; results are in request order."""
        return list(await asyncio.gather(*(self.route(r) for r in requests)))

    async def route(self, request: SwapRequest) -> RouteResult:
        try:
            bound = request.bound_min_out()
        except KeeperError as exc:
            return self._unroutable(request, [Attempt("oracle-bound", "refused", str(exc))])
        attempts: list[Attempt] = []
        stages: list[tuple[str, Callable[[], Awaitable[SwapQuote]], float]] = []
        if self._aggregator is not None:
            stages.append(("0x", lambda: self._aggregator_quote(request), self._aggregator_timeout))
        stages.append(("uniswap-direct", lambda: self._direct_quote(request), self._direct_timeout))
        for source, fetch, timeout in stages:
            result = await _attempt(source, fetch, timeout, request, bound)
            if isinstance(result, Attempt):
                attempts.append(result)
                continue
            attempts.append(Attempt(source, "ok", f"buy {result.buy_amount}"))
            return self._routed(request, result, bound, attempts)
        return self._unroutable(request, attempts)

    async def _aggregator_quote(self, request: SwapRequest) -> SwapQuote:
        assert self._aggregator is not None
        return await self._aggregator.quote(
            request.sell_token,
            request.buy_token,
            request.amount_in,
            request.vault,
            request.slippage_bps,
        )

    async def _direct_quote(self, request: SwapRequest) -> SwapQuote:
        quote: SwapQuote = await quote_retry(self._direct_attempts).retrying()(
            self._direct.quote,
            request.sell_token,
            request.buy_token,
            request.amount_in,
            request.vault,
            request.slippage_bps,
            request.deadline,
        )
        return quote

    def _routed(
        self, request: SwapRequest, quote: SwapQuote, bound: int, attempts: list[Attempt]
    ) -> Routed:
        leg = to_leg(request.vault, quote, request.sell_underlying, bound)
        fields = {
            "vault": request.vault,
            "route": quote.source,
            "amount_in": request.amount_in,
            "buy_amount": quote.buy_amount,
            "min_out": leg.min_out,
            "bound": bound,
        }
        if len(attempts) > 1:
            fields["fallback_because"] = "; ".join(
                f"{a.source} {a.outcome}: {a.detail}" for a in attempts[:-1]
            )
            log.warning("swap routed by fallback", extra={"fields": fields})
        else:
            log.info("swap routed", extra={"fields": fields})
        return Routed(request, quote, leg, bound, tuple(attempts))

    def _unroutable(self, request: SwapRequest, attempts: list[Attempt]) -> Unroutable:
        result = Unroutable(request, tuple(attempts))
        log.error(
            "swap unroutable",
            extra={
                "fields": {
                    "vault": request.vault,
                    "amount_in": request.amount_in,
                    "why": result.reason,
                }
            },
        )
        return result


async def _attempt(
    source: str,
    fetch: Callable[[], Awaitable[SwapQuote]],
    timeout: float,
    request: SwapRequest,
    bound: int,
) -> SwapQuote | Attempt:
    """The checked quote of one source, or the failed ``Attempt`` saying why."""
    try:
        quote = await asyncio.wait_for(fetch(), timeout)
    except TimeoutError:
        return Attempt(source, "timeout", f"no quote within {timeout}s")
    except QuoteRefused as exc:
        return Attempt(source, "refused", str(exc))
    except KeeperError as exc:
        return Attempt(source, "error", f"{type(exc).__name__}: {exc}")
    try:
        return check_quote(quote, request, bound, request.allowed_routers)
    except QuoteRefused as exc:
        return Attempt(source, "refused", str(exc))
