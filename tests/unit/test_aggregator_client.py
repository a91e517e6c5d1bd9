"""ZeroExClient against a real in-process aiohttp server speaking the 0x v2 format, and the
Router's race on top of it: the aggregator against the keeper's own direct quote (the direct
tier here is a given QuoterV2 answer; the real multicall is exercised on the fork in
tests/integration/test_routing.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from keeper.chain.aggregator import QUOTE_PATH, ZeroExClient, parse_quote
from keeper.chain.routing import AnswerTimes, NetRoute, Router
from keeper.chain.uniswap import TierQuote, UniswapDirect
from keeper.core.swap import SwapQuote, SwapRequest
from keeper.errors import QuoteError, QuoteRefused

WETH = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
USDC = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
ROUTER = "0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9"
BAD_ROUTER = "0x00000000000000000000000000000000bAD0bAd0"
VAULT = "0x322813Fd9A801c5507c9de605d63CEA4f2CE6c44"
API_KEY = "sk-test-5f2a9c81d04e"
WAD = 10**18
PRICE = 2998  # USDC per WETH the fake market pays


def quote_body(query: dict[str, str], to: str = ROUTER, price: int = PRICE) -> dict[str, Any]:
    """A 0x v2 allowance-holder quote body for the query (selling WETH for USDC)."""
    sell_amount = int(query["sellAmount"])
    buy = sell_amount * price * 10**6 // WAD
    slippage = int(query.get("slippageBps", "100"))
    return {
        "blockNumber": "55",
        "buyAmount": str(buy),
        "buyToken": query["buyToken"],
        "fees": {"integratorFee": None, "zeroExFee": None, "gasFee": None},
        "issues": {
            "allowance": {"actual": "0", "spender": to},
            "balance": None,
            "simulationIncomplete": False,
            "invalidSourcesPassed": [],
        },
        "liquidityAvailable": True,
        "minBuyAmount": str(buy * (10_000 - slippage) // 10_000),
        "route": {
            "fills": [
                {
                    "from": query["sellToken"],
                    "to": query["buyToken"],
                    "source": "Uniswap_V3",
                    "proportionBps": "10000",
                }
            ],
            "tokens": [],
        },
        "sellAmount": str(sell_amount),
        "sellToken": query["sellToken"],
        "totalNetworkFee": "0",
        "transaction": {
            "to": to,
            "data": "0xdeadbeef",
            "gas": "180000",
            "gasPrice": "1000000000",
            "value": "0",
        },
        "zid": "0x0123456789abcdef01234567",
    }


Behaviour = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


@dataclass
class FakeZeroEx:
    """Records every request; ``behaviour(request, n)`` answers the n-th (0-based) one."""

    behaviour: Behaviour
    seen: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        n = len(self.seen)
        self.seen.append((dict(request.query), dict(request.headers)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.behaviour(request, n)
        finally:
            self.in_flight -= 1


async def ok(request: web.Request, _: int) -> web.StreamResponse:
    return web.json_response(quote_body(dict(request.query)))


def error(status: int, name: str, message: str) -> Behaviour:
    async def answer(_: web.Request, __: int) -> web.StreamResponse:
        return web.json_response(
            {"name": name, "message": message, "data": {"zid": "0x1"}}, status=status
        )

    return answer


def run_with_server(
    behaviour: Behaviour,
    scenario: Callable[[ZeroExClient, FakeZeroEx], Awaitable[Any]],
    timeout: float = 2.0,
    attempts: int = 2,
) -> tuple[Any, FakeZeroEx]:
    fake = FakeZeroEx(behaviour)

    async def main() -> Any:
        app = web.Application()
        app.router.add_get(QUOTE_PATH, fake.handle)
        async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
            base = str(server.make_url("/"))
            client = ZeroExClient(session, base, API_KEY, 31337, timeout, attempts=attempts)
            return await scenario(client, fake)

    return asyncio.run(main()), fake


async def sell_two_weth(client: ZeroExClient, _: FakeZeroEx) -> SwapQuote:
    return await client.quote(WETH, USDC, 2 * WAD, VAULT, 30)


def test_quote_sends_the_0x_v2_request_and_parses_the_answer() -> None:
    quote, fake = run_with_server(ok, sell_two_weth)
    assert quote == SwapQuote(
        source="0x",
        router=ROUTER,
        call_data=bytes.fromhex("deadbeef"),
        sell_token=WETH,
        buy_token=USDC,
        sell_amount=2 * WAD,
        buy_amount=5_996_000_000,
        min_buy_amount=5_996_000_000 * 9_970 // 10_000,
        gas=180_000,
    )
    ((query, headers),) = fake.seen
    assert query == {
        "chainId": "31337",
        "sellToken": WETH,
        "buyToken": USDC,
        "sellAmount": str(2 * WAD),
        "taker": VAULT,
        "slippageBps": "30",
    }
    assert headers["0x-api-key"] == API_KEY
    assert headers["0x-version"] == "v2"


def test_server_errors_are_retried_then_raise_a_retryable_quote_error() -> None:
    with pytest.raises(QuoteError, match="HTTP 500 INTERNAL_SERVER_ERROR"):
        run_with_server(error(500, "INTERNAL_SERVER_ERROR", "boom"), sell_two_weth, attempts=3)


def test_a_5xx_then_a_good_answer_succeeds_on_the_retry() -> None:
    async def flaky(request: web.Request, n: int) -> web.StreamResponse:
        if n == 0:
            return web.json_response({"name": "INTERNAL_SERVER_ERROR", "message": "x"}, status=503)
        return await ok(request, n)

    quote, fake = run_with_server(flaky, sell_two_weth)
    assert quote.buy_amount == 5_996_000_000
    assert len(fake.seen) == 2


def test_rate_limit_is_retryable() -> None:
    fake_box: list[FakeZeroEx] = []

    async def scenario(client: ZeroExClient, fake: FakeZeroEx) -> None:
        fake_box.append(fake)
        await sell_two_weth(client, fake)

    with pytest.raises(QuoteError, match="HTTP 429"):
        run_with_server(error(429, "RATE_LIMITED", "slow down"), scenario, attempts=2)
    assert len(fake_box[0].seen) == 2


def test_input_errors_are_refused_without_retrying() -> None:
    fake_box: list[FakeZeroEx] = []

    async def scenario(client: ZeroExClient, fake: FakeZeroEx) -> None:
        fake_box.append(fake)
        await sell_two_weth(client, fake)

    with pytest.raises(QuoteRefused, match="HTTP 400 INPUT_INVALID: Validation Failed"):
        run_with_server(error(400, "INPUT_INVALID", "Validation Failed"), scenario, attempts=3)
    assert len(fake_box[0].seen) == 1


def test_a_stalled_aggregator_times_out_as_a_quote_error() -> None:
    async def stall(_: web.Request, __: int) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.json_response({})

    with pytest.raises(QuoteError, match=r"no answer within 0.2s"):
        run_with_server(stall, sell_two_weth, timeout=0.2, attempts=1)


def test_connection_refused_is_a_quote_error() -> None:
    async def main() -> None:
        app = web.Application()
        async with TestServer(app, host="127.0.0.1") as server:
            base = str(server.make_url("/"))
        async with aiohttp.ClientSession() as session:  # the server is gone now
            client = ZeroExClient(session, base, None, 31337, 1.0, attempts=1)
            await client.quote(WETH, USDC, WAD, VAULT, 30)

    with pytest.raises(QuoteError, match="ClientConnectorError"):
        asyncio.run(main())


def test_no_liquidity_is_refused() -> None:
    async def dry(_: web.Request, __: int) -> web.StreamResponse:
        return web.json_response({"liquidityAvailable": False, "zid": "0x2"})

    with pytest.raises(QuoteRefused, match="no liquidity"):
        run_with_server(dry, sell_two_weth)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda b: b.pop("buyAmount"), "buyAmount"),
        (lambda b: b.update(buyAmount="-5"), "buyAmount"),
        (lambda b: b.update(minBuyAmount=1.5), "minBuyAmount"),
        (lambda b: b["transaction"].update(to="0x1234"), "transaction.to"),
        (lambda b: b["transaction"].update(data="0xabc"), "transaction.data"),
        (lambda b: b.pop("transaction"), "no transaction"),
        (lambda b: b.pop("liquidityAvailable"), "liquidityAvailable"),
    ],
)
def test_unusable_bodies_are_quote_errors(
    mutate: Callable[[dict[str, Any]], Any], match: str
) -> None:
    async def broken(request: web.Request, _: int) -> web.StreamResponse:
        body = quote_body(dict(request.query))
        mutate(body)
        return web.json_response(body)

    with pytest.raises(QuoteError, match=match):
        run_with_server(broken, sell_two_weth, attempts=1)


def test_a_body_that_is_not_json_is_a_quote_error() -> None:
    async def html(_: web.Request, __: int) -> web.StreamResponse:
        return web.Response(text="<html>bad gateway</html>", content_type="text/html")

    with pytest.raises(QuoteError, match="not a JSON object"):
        run_with_server(html, sell_two_weth, attempts=1)


def test_a_quote_that_sends_eth_is_refused() -> None:
    body = quote_body({"sellAmount": str(WAD), "sellToken": WETH, "buyToken": USDC})
    body["transaction"]["value"] = "1"
    with pytest.raises(QuoteRefused, match="sends ETH"):
        parse_quote(body)


def test_the_api_key_is_never_logged_nor_in_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []

    async def scenario(client: ZeroExClient, fake: FakeZeroEx) -> None:
        errors.append(repr(client))
        await sell_two_weth(client, fake)
        try:
            await sell_two_weth(client, fake)
        except QuoteRefused as exc:
            errors.append(str(exc))

    async def second_unauthorized(request: web.Request, n: int) -> web.StreamResponse:
        if n == 0:
            return await ok(request, n)
        return await error(401, "UNAUTHORIZED", "Invalid API key")(request, n)

    run_with_server(second_unauthorized, scenario)
    assert any("UNAUTHORIZED" in e for e in errors)
    assert any(r.name == "keeper.aggregator" for r in caplog.records)
    texts = errors + [
        r.getMessage() + json.dumps(getattr(r, "fields", {}), default=str) for r in caplog.records
    ]
    assert all(API_KEY not in t for t in texts)


# --- the race: aggregator against the keeper's own direct quote -----------------------------

SETTLEMENT = "0x000000000000000000000000000000005e771e00"


def request(amount: int = 2 * WAD) -> SwapRequest:
    return SwapRequest(
        taker=SETTLEMENT,
        sell_underlying=True,
        amount_in=amount,
        underlying=WETH,
        quote_token=USDC,
        oracle_answer=3000 * 10**8,
        oracle_decimals=8,
        max_slippage_bps=100,
        allowed_routers=frozenset({ROUTER}),
        deadline=1_700_000_600,
        underlying_decimals=18,
        quote_decimals=6,
        slippage_bps=30,
    )


def tier(amount: int = 2 * WAD, price: int = 2990) -> TierQuote:
    """QuoterV2's answer for the net on the best tier."""
    return TierQuote(500, amount, amount * price * 10**6 // WAD, 0, 1, 100_000)


OWN_MIN = tier().amount_out * (10_000 - 30) // 10_000  # what the keeper signs


def race(
    behaviour: Behaviour,
    budget: float = 1.0,
    asked: SwapRequest | None = None,
    gas_usdc_per_unit: int = 0,
) -> tuple[NetRoute, FakeZeroEx]:
    async def scenario(client: ZeroExClient, _: FakeZeroEx) -> NetRoute:
        direct = UniswapDirect(None, ROUTER, ROUTER)  # type: ignore[arg-type]  # calldata only
        router = Router(direct, client, race_seconds=budget)
        started = router.start_aggregator(asked or request())
        return await router.route_net(
            request(), tier(), OWN_MIN, started, lambda gas: gas * gas_usdc_per_unit
        )

    return run_with_server(behaviour, scenario, timeout=5.0, attempts=1)


def test_the_aggregator_wins_when_it_beats_the_direct_route_after_gas() -> None:
    result, fake = race(ok)  # 2998 vs 2990 direct
    assert result.uses_aggregator and result.quote.source == "0x"
    assert result.min_out == OWN_MIN  # signed from the keeper's own quote, not the aggregator's
    assert result.direct.source == "uniswap-direct"  # kept for a fallback in the same block
    ((query, _),) = fake.seen
    assert query["taker"] == SETTLEMENT


def test_a_slow_aggregator_loses_the_race() -> None:
    async def stall(_: web.Request, __: int) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.json_response({})

    result, _ = race(stall, budget=0.05)
    assert not result.uses_aggregator
    assert [(a.source, a.outcome) for a in result.attempts] == [
        ("uniswap-direct", "ok"),
        ("0x", "timeout"),
    ]


def test_an_aggregator_slower_than_the_budget_lately_is_not_waited_for_but_still_timed() -> None:
    """Its last answers took 0.5 s against a 0.1 s budget: the direct route goes at once;
    the request runs on, its answer time is recorded, and a fast answer makes it worth
    waiting for again."""

    async def late(request: web.Request, _: int) -> web.StreamResponse:
        await asyncio.sleep(0.05)
        return await ok(request, _)

    async def scenario(client: ZeroExClient, _: FakeZeroEx) -> tuple[NetRoute, float, list[float]]:
        direct = UniswapDirect(None, ROUTER, ROUTER)  # type: ignore[arg-type]  # calldata only
        router = Router(direct, client, race_seconds=0.1)
        for _answer in range(3):
            router.answer_times.add(0.5)
        started = router.start_aggregator(request())
        assert started is not None
        t0 = time.monotonic()
        result = await router.route_net(request(), tier(), OWN_MIN, started, lambda gas: 0)
        waited = time.monotonic() - t0
        await asyncio.wait([started.task], timeout=2)
        return result, waited, list(router.answer_times.seconds)

    (result, waited, times), fake = run_with_server(late, scenario, timeout=5.0, attempts=1)
    assert not result.uses_aggregator
    assert (
        result.attempts[-1].outcome == "timeout" and "not waited for" in result.attempts[-1].detail
    )
    assert waited < 0.05  # the direct route did not wait for the aggregator's 0.05 s
    assert len(fake.seen) == 1 and len(times) == 4 and 0.05 <= times[-1] < 0.5
    for _answer in range(4):
        times.append(0.01)
    assert AnswerTimes(seconds=times).worth_waiting(0.1)  # fast again: waited for


def test_a_better_price_that_costs_more_gas_than_it_gains_loses() -> None:
    # 2 WETH x 8 USDC better = 16 USDC; 80k more gas (180k vs 100k + overhead) at 1 USDC/k gas
    result, _ = race(ok, gas_usdc_per_unit=1_000)
    assert not result.uses_aggregator
    assert result.attempts[-1].outcome == "worse"


def test_an_aggregator_promising_less_than_the_own_minimum_is_refused() -> None:
    async def skim(request: web.Request, _: int) -> web.StreamResponse:
        return web.json_response(
            quote_body(dict(request.query), price=2980)
        )  # below 2990 less 30 bps

    result, _ = race(skim)
    assert not result.uses_aggregator
    assert "below the own minimum" in result.attempts[-1].detail


def test_an_unknown_router_is_refused() -> None:
    async def bad_router(request: web.Request, _: int) -> web.StreamResponse:
        return web.json_response(quote_body(dict(request.query), to=BAD_ROUTER))

    result, _ = race(bad_router)
    assert not result.uses_aggregator and "not allowlisted" in result.attempts[-1].detail


def test_an_aggregator_error_leaves_the_direct_route() -> None:
    result, _ = race(error(500, "INTERNAL_SERVER_ERROR", "down"))
    assert not result.uses_aggregator and result.attempts[-1].outcome == "error"


def test_an_answer_for_another_size_is_not_used() -> None:
    result, _ = race(ok, asked=request(amount=3 * WAD))
    assert not result.uses_aggregator
    assert "resized" in result.attempts[-1].detail
