"""ZeroExClient against a real in-process aiohttp server speaking the 0x v2 format, and the
Router's fallback logic on top of it (the direct route here is a scripted stand-in; the real
one is exercised in tests/integration/test_routing.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from keeper.chain.aggregator import QUOTE_PATH, ZeroExClient, parse_quote
from keeper.chain.routing import Routed, Router, Unroutable
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


# --- the Router's fallback logic ---------------------------------------------------------------


@dataclass
class ScriptedDirect:
    """Stands in for UniswapDirect: a fixed price, or a failure to raise."""

    price: int = 2990
    fail: Exception | None = None
    calls: int = 0

    async def quote(
        self,
        sell_token: str,
        buy_token: str,
        amount_in: int,
        recipient: str,
        slippage_bps: int,
        deadline: int,
    ) -> SwapQuote:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        buy = amount_in * self.price * 10**6 // WAD
        return SwapQuote(
            "uniswap-direct",
            ROUTER,
            b"\x04\x14\xbf\x89",
            sell_token,
            buy_token,
            amount_in,
            buy,
            buy * (10_000 - slippage_bps) // 10_000,
            140_000,
        )


def request(amount: int = 2 * WAD, vault: str = VAULT) -> SwapRequest:
    return SwapRequest(
        vault=vault,
        sell_underlying=True,
        amount_in=amount,
        underlying=WETH,
        quote_token=USDC,
        oracle_answer=3000 * 10**8,
        oracle_decimals=8,
        max_slippage_bps=100,
        allowed_routers=frozenset({ROUTER}),
        deadline=1_700_000_600,
        slippage_bps=30,
    )


def route(
    behaviour: Behaviour,
    direct: ScriptedDirect,
    requests: list[SwapRequest],
    stage_timeout: float = 1.0,
) -> tuple[list[Routed | Unroutable], FakeZeroEx]:
    async def scenario(client: ZeroExClient, _: FakeZeroEx) -> list[Routed | Unroutable]:
        router = Router(
            direct,
            client,
            aggregator_timeout_seconds=stage_timeout,
            direct_timeout_seconds=1.0,
            direct_attempts=1,
        )
        return await router.quote_all(requests)

    return run_with_server(behaviour, scenario, timeout=2.0, attempts=1)


def test_router_uses_the_aggregator_when_its_quote_is_good() -> None:
    direct = ScriptedDirect()
    (result,), _ = route(ok, direct, [request()])
    assert isinstance(result, Routed)
    assert result.quote.source == "0x"
    assert not result.fell_back
    assert result.leg.min_out == max(result.quote.min_buy_amount, result.bound_min_out)
    assert direct.calls == 0


def test_router_falls_back_when_the_aggregator_fails(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="keeper.routing")
    (result,), _ = route(error(500, "INTERNAL_SERVER_ERROR", "down"), ScriptedDirect(), [request()])
    assert isinstance(result, Routed)
    assert result.quote.source == "uniswap-direct"
    assert [(a.source, a.outcome) for a in result.attempts] == [
        ("0x", "error"),
        ("uniswap-direct", "ok"),
    ]
    (record,) = [r for r in caplog.records if r.getMessage() == "swap routed by fallback"]
    assert "HTTP 500" in record.fields["fallback_because"]  # type: ignore[attr-defined]


def test_router_falls_back_when_the_aggregator_quotes_an_unknown_router() -> None:
    async def bad_router(request: web.Request, _: int) -> web.StreamResponse:
        return web.json_response(quote_body(dict(request.query), to=BAD_ROUTER))

    (result,), _ = route(bad_router, ScriptedDirect(), [request()])
    assert isinstance(result, Routed)
    assert result.quote.source == "uniswap-direct"
    assert result.attempts[0].outcome == "refused"
    assert "not allowlisted" in result.attempts[0].detail


def test_router_falls_back_when_the_aggregator_stalls() -> None:
    async def stall(_: web.Request, __: int) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.json_response({})

    (result,), _ = route(stall, ScriptedDirect(), [request()], stage_timeout=0.3)
    assert isinstance(result, Routed)
    assert result.quote.source == "uniswap-direct"
    assert (result.attempts[0].source, result.attempts[0].outcome) == ("0x", "timeout")


def test_router_reports_why_when_every_route_fails() -> None:
    async def cheap(request: web.Request, _: int) -> web.StreamResponse:
        return web.json_response(quote_body(dict(request.query), price=1500))

    direct = ScriptedDirect(fail=QuoteRefused("no Uniswap tier can fill the order"))
    (result,), _ = route(cheap, direct, [request()])
    assert isinstance(result, Unroutable)
    assert [(a.source, a.outcome) for a in result.attempts] == [
        ("0x", "refused"),
        ("uniswap-direct", "refused"),
    ]
    assert "below the oracle bound" in result.reason
    assert "no Uniswap tier" in result.reason


def test_direct_price_below_the_bound_is_refused_too() -> None:
    (result,), _ = route(
        error(500, "INTERNAL_SERVER_ERROR", "x"), ScriptedDirect(price=2900), [request()]
    )
    assert isinstance(result, Unroutable)
    assert result.attempts[-1].outcome == "refused"


def test_a_bad_oracle_answer_makes_the_request_unroutable_without_asking_anyone() -> None:
    bad = replace(request(), oracle_answer=0)
    direct = ScriptedDirect()
    (result,), fake = route(ok, direct, [bad])
    assert isinstance(result, Unroutable)
    assert result.attempts[0].source == "oracle-bound"
    assert fake.seen == [] and direct.calls == 0


def test_one_blocks_requests_are_fetched_concurrently() -> None:
    async def slow(request: web.Request, n: int) -> web.StreamResponse:
        await asyncio.sleep(0.2)
        return await ok(request, n)

    vaults = [f"0x{i:040x}" for i in range(1, 7)]
    results, fake = route(slow, ScriptedDirect(), [request(vault=v) for v in vaults])
    assert [r.request.vault for r in results] == vaults
    assert all(isinstance(r, Routed) and r.quote.source == "0x" for r in results)
    assert fake.max_in_flight == len(vaults)
