"""One quote for the net: the keeper's own direct quote and the aggregator race.

A block's book is priced once: :meth:`Router.depth` asks the direct route for every size the
book needs in one Multicall3 eth_call while the aggregator (if configured) is already asked
for the net (:meth:`Router.start_aggregator`, started first so the two run side by side).
:meth:`Router.route_net` then waits for the aggregator only until the race budget is spent
(``race_seconds`` from its start, never "a timeout, then the fallback") and uses its route
only when it beats the direct route **after gas**. An aggregator whose recent answers came
later than the budget is not waited for at all: its request still runs to the end (bounded
by the client's timeout) so its latency keeps being measured, and it is waited for again
once it answers within the budget (:class:`AnswerTimes`). Aggregator answers are checked, not
trusted: the minimum output the keeper signs comes from its own direct quote
(``min_out``), an aggregator quote that promises less, names another router or token, or
fails its checks loses, and the direct route stays at hand (:attr:`NetRoute.direct`) for the
actor to fall back to in the same block when the aggregator's calldata fails simulation.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from keeper.chain.uniswap import DirectDepth, TierQuote, UniswapDirect
from keeper.core.swap import SwapQuote, SwapRequest, check_quote
from keeper.errors import KeeperError, QuoteRefused

log = logging.getLogger("keeper.routing")

Outcome = Literal["ok", "error", "timeout", "refused", "worse"]


class AggregatorQuotes(Protocol):
    """What the router needs of an aggregator client (``ZeroExClient``)."""

    async def quote(
        self, sell_token: str, buy_token: str, sell_amount: int, taker: str, slippage_bps: int
    ) -> SwapQuote: ...


@dataclass(frozen=True)
class Attempt:
    """One source tried for the net, and how it went."""

    source: str
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class NetRoute:
    """The route chosen for a net swap; ``min_out`` is always the keeper's own."""

    quote: SwapQuote
    direct: SwapQuote
    min_out: int
    attempts: tuple[Attempt, ...]

    @property
    def uses_aggregator(self) -> bool:
        return self.quote is not self.direct


@dataclass
class AggregatorRace:
    """An aggregator quote in flight for one net (started before the direct multicall)."""

    request: SwapRequest
    task: asyncio.Task[SwapQuote]
    started: float


@dataclass
class AnswerTimes:
    """How long the aggregator's last answers took (seconds from the request), to judge
    whether waiting for the next one within the budget is worth anything."""

    keep: int = 8
    seconds: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.seconds = [*self.seconds, seconds][-self.keep :]

    def typical(self) -> float | None:
        """The median of the recent answers; None before any."""
        return statistics.median(self.seconds) if self.seconds else None

    def worth_waiting(self, budget: float) -> bool:
        """Wait unless the recent answers typically came after the budget."""
        typical = self.typical()
        return typical is None or typical <= budget


class Router:
    """The direct depth for a book and the aggregator race for its net."""

    def __init__(
        self,
        direct: UniswapDirect,
        aggregator: AggregatorQuotes | None = None,
        *,
        race_seconds: float = 0.15,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.direct = direct
        self._aggregator = aggregator
        self._race = race_seconds
        self._clock = clock
        self.answer_times = AnswerTimes()
        self._in_flight: set[asyncio.Task[SwapQuote]] = set()  # requests not waited for

    def start_aggregator(self, request: SwapRequest) -> AggregatorRace | None:
        """Ask the aggregator for ``request`` now; the answer is awaited in ``route_net``."""
        if self._aggregator is None or request.amount_in <= 0:
            return None
        coro = self._aggregator.quote(
            request.sell_token,
            request.buy_token,
            request.amount_in,
            request.taker,
            request.slippage_bps,
        )
        race = AggregatorRace(request, asyncio.ensure_future(coro), self._clock())
        race.task.add_done_callback(lambda task: self._answered(race, task))
        self._in_flight.add(race.task)
        race.task.add_done_callback(self._in_flight.discard)
        return race

    async def close(self) -> None:
        """Cancel the aggregator requests still running (before their session closes)."""
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _answered(self, race: AggregatorRace, task: asyncio.Task[SwapQuote]) -> None:
        """Its answer time (a quote or a refusal; not a transport failure or a cancel)."""
        if task.cancelled():
            return
        error = task.exception()
        if error is None or isinstance(error, QuoteRefused):
            self.answer_times.add(self._clock() - race.started)

    async def depth(
        self, underlying: str, quote_token: str, sizes: dict[bool, list[int]]
    ) -> DirectDepth:
        """Every size the book needs, every tier, in one multicall."""
        return await self.direct.quote_depth(underlying, quote_token, sizes)

    async def route_net(
        self,
        request: SwapRequest,
        tier: TierQuote,
        min_out: int,
        race: AggregatorRace | None,
        gas_cost: Callable[[int], int],
    ) -> NetRoute:
        """The route for the net ``request``: the direct ``tier`` signed at ``min_out``, or the
        aggregator's if it answered within the race budget, passed its checks and delivers
        more than the direct route after ``gas_cost`` (gas units -> output token units)."""
        direct = self.direct.swap(
            tier, request.sell_token, request.buy_token, request.taker, request.deadline, min_out
        )
        attempts = [Attempt("uniswap-direct", "ok", f"buy {tier.amount_out}")]
        if race is None:
            return NetRoute(direct, direct, min_out, tuple(attempts))
        if race.request.amount_in != request.amount_in:
            race.task.cancel()
            attempts.append(Attempt("0x", "refused", "net resized after the aggregator was asked"))
            return NetRoute(direct, direct, min_out, tuple(attempts))
        outcome = await self._await(race)
        if isinstance(outcome, Attempt):
            attempts.append(outcome)
            return self._direct(direct, min_out, attempts)
        judged = _judge(outcome, request, direct, min_out, gas_cost)
        attempts.append(judged)
        if judged.outcome != "ok":
            return self._direct(direct, min_out, attempts)
        log.info("net routed by the aggregator", extra={"fields": _fields(request, attempts)})
        return NetRoute(outcome, direct, min_out, tuple(attempts))

    def _direct(self, direct: SwapQuote, min_out: int, attempts: list[Attempt]) -> NetRoute:
        log.info("net routed direct", extra={"fields": {"attempts": [a.detail for a in attempts]}})
        return NetRoute(direct, direct, min_out, tuple(attempts))

    async def _await(self, race: AggregatorRace) -> SwapQuote | Attempt:
        if not race.task.done() and not self.answer_times.worth_waiting(self._race):
            typical = self.answer_times.typical()
            return Attempt(
                "0x", "timeout", f"not waited for: answers in {typical:.3f}s, budget {self._race}s"
            )
        left = max(self._race - (self._clock() - race.started), 0.0)
        try:
            return await asyncio.wait_for(asyncio.shield(race.task), left)
        except TimeoutError:  # it runs on (to its own timeout): its answer time is measured
            return Attempt("0x", "timeout", f"no answer within the {self._race}s race budget")
        except QuoteRefused as exc:
            return Attempt("0x", "refused", str(exc))
        except KeeperError as exc:
            return Attempt("0x", "error", f"{type(exc).__name__}: {exc}")


def _judge(
    quote: SwapQuote,
    request: SwapRequest,
    direct: SwapQuote,
    min_out: int,
    gas_cost: Callable[[int], int],
) -> Attempt:
    """Whether the aggregator's quote may replace the direct route."""
    try:
        check_quote(quote, request, request.bound_min_out(), request.allowed_routers)
    except QuoteRefused as exc:
        return Attempt("0x", "refused", str(exc))
    if quote.buy_amount < min_out:
        return Attempt("0x", "refused", f"buys {quote.buy_amount}, below the own minimum {min_out}")
    extra_gas = gas_cost(max(quote.gas - direct.gas, 0)) - gas_cost(max(direct.gas - quote.gas, 0))
    gain = quote.buy_amount - direct.buy_amount - extra_gas
    if gain <= 0:
        return Attempt("0x", "worse", f"buys {quote.buy_amount} vs {direct.buy_amount} after gas")
    return Attempt("0x", "ok", f"buys {quote.buy_amount}, {gain} more than direct after gas")


def _fields(request: SwapRequest, attempts: list[Attempt]) -> dict[str, object]:
    return {
        "taker": request.taker,
        "amount_in": request.amount_in,
        "attempts": [f"{a.source} {a.outcome}: {a.detail}" for a in attempts],
    }
